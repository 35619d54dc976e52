#include "common/tls/error.h"

namespace trellis::tls {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::protocol:
      return "protocol";
    case ErrorCode::peer_alert:
      return "peer_alert";
    case ErrorCode::peer_certificate:
      return "peer_certificate";
    case ErrorCode::peer_identity:
      return "peer_identity";
    case ErrorCode::alpn:
      return "alpn";
    case ErrorCode::truncated:
      return "truncated";
    case ErrorCode::closed:
      return "closed";
  }
  return "unknown";
}

}  // namespace trellis::tls
