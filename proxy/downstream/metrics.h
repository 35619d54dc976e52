// Metric handles of the downstream (client-facing) HTTP connections.
//
// Families (registered once per process by DownstreamMetricFamilies::create):
//   trellis_tcp_connections_open{direction}                   gauge: downstream connections open
//   trellis_downstream_requests_total{direction,protocol}     requests received, by HTTP version
//   trellis_http_malformed_requests_total{direction,reason}   requests (or HTTP/2 streams and
//                                                             connections) refused as malformed
// The connections_open family is public so that the integrator can resolve
// the splices' gauge (proxy/tcp SpliceMetrics) from the same family.
//
// Handles are resolved once per worker (resolve() takes locks) and then used
// lock-free; a DownstreamMetrics must outlive every connection that uses it.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

#include "common/base/result.h"
#include "common/http/message.h"
#include "common/metrics/metrics.h"
#include "proxy/http/stream.h"

namespace trellis::proxy::downstream {

// Why a request, stream or connection was refused. A fixed set: these are
// label values.
enum class MalformedReason {
  bad_request,            // 400: malformed request line, header, framing, early EOF
  uri_too_long,           // 414
  header_too_large,       // 431: header section over its byte or field limit
  body_too_large,         // 413
  not_implemented,        // 501: unsupported Transfer-Encoding, CONNECT
  version_not_supported,  // 505
  header_timeout,         // 408: the request head did not complete in time (slowloris)
  stream_error,           // HTTP/2: one stream reset for a malformed header block
  connection_error,       // HTTP/2: the connection failed (bad preface, protocol error, flood)
};
inline constexpr size_t kMalformedReasonCount = 9;

// "bad_request", "uri_too_long", ...
std::string_view malformed_reason_name(MalformedReason reason);
// The reason for an HTTP/1 decoder status (400, 413, 414, 431, 501, 505, 408);
// anything else is bad_request.
MalformedReason malformed_reason_for_status(int status);


// Empty handles ignore updates: a default-constructed DownstreamMetrics
// counts nothing.
struct DownstreamMetrics {
  metrics::Gauge connections_open;
  metrics::Counter requests_http10;
  metrics::Counter requests_http11;
  metrics::Counter requests_http2;
  std::array<metrics::Counter, kMalformedReasonCount> malformed;

  void count_request(trellis::http::Version version) const;
  void count_malformed(MalformedReason reason) const {
    malformed[static_cast<size_t>(reason)].inc();
  }
};

struct DownstreamMetricFamilies {
  metrics::GaugeFamily connections_open;
  metrics::CounterFamily requests;
  metrics::CounterFamily malformed;

  // Errors are the registry's (a name registered twice, ...).
  static Result<DownstreamMetricFamilies> create(metrics::Registry& registry);
  // Every handle for one direction: protocol labels "HTTP/1.0", "HTTP/1.1",
  // "HTTP/2"; reason labels as malformed_reason_name.
  Result<DownstreamMetrics> resolve(http::Direction direction) const;
};

}  // namespace trellis::proxy::downstream
