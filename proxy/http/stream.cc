#include "proxy/http/stream.h"

namespace trellis::proxy::http {

std::string_view failure_name(UpstreamFailure f) {
  switch (f) {
    case UpstreamFailure::connect_failed: return "connect_failed";
    case UpstreamFailure::refused_stream: return "refused_stream";
    case UpstreamFailure::reset: return "reset";
    case UpstreamFailure::protocol_error: return "protocol_error";
  }
  return "unknown";
}

}  // namespace trellis::proxy::http
