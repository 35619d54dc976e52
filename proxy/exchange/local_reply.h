// Answers the proxy gives itself: plain HTTP, or, for gRPC requests, the
// gRPC "Trailers-Only" form, as Linkerd does: HTTP 200 with content-type
// application/grpc and grpc-status / grpc-message in the one header block
// (end of stream), because gRPC clients read the status from there and treat
// other HTTP statuses as transport errors. Mapping of the would-be status:
//   404 -> 12 UNIMPLEMENTED     (no route)
//   500 -> 13 INTERNAL          (missing backend, unsupported filter)
//   502, 503 -> 14 UNAVAILABLE  (no endpoint, connect failure, reset, malformed)
//   504 -> 4 DEADLINE_EXCEEDED  (timeouts)
//   400 -> 13 INTERNAL, anything else -> 2 UNKNOWN
// Error replies carry `trellis-proxy-error: <reason>` so that a client (and
// whoever debugs it) can tell the proxy's 503 from the application's.
#pragma once

#include <string_view>

#include "common/http/message.h"
#include "proxy/exchange/metrics.h"

namespace trellis::proxy::exchange {

inline constexpr std::string_view kProxyErrorHeader = "trellis-proxy-error";

// content-type application/grpc, application/grpc+proto, ... (case-insensitive).
bool is_grpc(const trellis::http::RequestHead& request);

int grpc_status_for(int http_status);

// `status` with no body and the reason header.
trellis::http::ResponseHead local_reply(int status, LocalReason reason);
// The Trailers-Only gRPC answer for what would have been `http_status`.
trellis::http::ResponseHead grpc_local_reply(int http_status, LocalReason reason);

}  // namespace trellis::proxy::exchange
