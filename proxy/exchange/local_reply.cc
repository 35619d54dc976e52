#include "proxy/exchange/local_reply.h"

#include <string>

namespace trellis::proxy::exchange {

namespace h = trellis::http;

bool is_grpc(const h::RequestHead& request) {
  const std::string* type = request.headers.get("content-type");
  constexpr std::string_view kGrpc = "application/grpc";
  return type != nullptr && type->size() >= kGrpc.size() &&
         h::iequals(std::string_view(*type).substr(0, kGrpc.size()), kGrpc);
}

int grpc_status_for(int http_status) {
  switch (http_status) {
    case 400: return 13;  // INTERNAL
    case 404: return 12;  // UNIMPLEMENTED
    case 500: return 13;  // INTERNAL
    case 502:
    case 503: return 14;  // UNAVAILABLE
    case 504: return 4;   // DEADLINE_EXCEEDED
    default: return 2;    // UNKNOWN
  }
}

h::ResponseHead local_reply(int status, LocalReason reason) {
  h::ResponseHead head;
  head.status = status;
  head.headers.add(kProxyErrorHeader, local_reason_name(reason));
  return head;
}

h::ResponseHead grpc_local_reply(int http_status, LocalReason reason) {
  h::ResponseHead head;
  head.status = 200;
  head.headers.add("content-type", "application/grpc");
  head.headers.add("grpc-status", std::to_string(grpc_status_for(http_status)));
  head.headers.add("grpc-message", local_reason_name(reason));
  head.headers.add(kProxyErrorHeader, local_reason_name(reason));
  return head;
}

}  // namespace trellis::proxy::exchange
