#include "proxy/http/stream.h"

namespace trellis::proxy::http {

std::string_view direction_name(Direction direction) {
  return direction == Direction::inbound ? "inbound" : "outbound";
}

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
