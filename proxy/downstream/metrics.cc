#include "proxy/downstream/metrics.h"

#include <string>
#include <utility>
#include <vector>

namespace trellis::proxy::downstream {

std::string_view malformed_reason_name(MalformedReason reason) {
  switch (reason) {
    case MalformedReason::bad_request: return "bad_request";
    case MalformedReason::uri_too_long: return "uri_too_long";
    case MalformedReason::header_too_large: return "header_too_large";
    case MalformedReason::body_too_large: return "body_too_large";
    case MalformedReason::not_implemented: return "not_implemented";
    case MalformedReason::version_not_supported: return "version_not_supported";
    case MalformedReason::header_timeout: return "header_timeout";
    case MalformedReason::stream_error: return "stream_error";
    case MalformedReason::connection_error: return "connection_error";
  }
  return "bad_request";
}

MalformedReason malformed_reason_for_status(int status) {
  switch (status) {
    case 408: return MalformedReason::header_timeout;
    case 413: return MalformedReason::body_too_large;
    case 414: return MalformedReason::uri_too_long;
    case 431: return MalformedReason::header_too_large;
    case 501: return MalformedReason::not_implemented;
    case 505: return MalformedReason::version_not_supported;
    default: return MalformedReason::bad_request;
  }
}

void DownstreamMetrics::count_request(trellis::http::Version version) const {
  switch (version) {
    case trellis::http::Version::http10: requests_http10.inc(); return;
    case trellis::http::Version::http11: requests_http11.inc(); return;
    case trellis::http::Version::http2: requests_http2.inc(); return;
  }
}

Result<DownstreamMetricFamilies> DownstreamMetricFamilies::create(metrics::Registry& registry) {
  DownstreamMetricFamilies f;
  auto open = registry.gauge("trellis_tcp_connections_open", "Client connections open.",
                             {"direction"});
  if (!open.ok()) return open.error();
  f.connections_open = std::move(open).value();
  auto requests = registry.counter("trellis_downstream_requests_total",
                                   "Requests received from clients, by HTTP version.",
                                   {"direction", "protocol"});
  if (!requests.ok()) return requests.error();
  f.requests = std::move(requests).value();
  auto malformed = registry.counter(
      "trellis_http_malformed_requests_total",
      "Client requests, HTTP/2 streams and connections refused as malformed, by reason.",
      {"direction", "reason"});
  if (!malformed.ok()) return malformed.error();
  f.malformed = std::move(malformed).value();
  return f;
}

Result<DownstreamMetrics> DownstreamMetricFamilies::resolve(http::Direction direction) const {
  std::string dir(http::direction_name(direction));
  DownstreamMetrics m;
  auto open = connections_open.with_labels({dir});
  if (!open.ok()) return open.error();
  m.connections_open = std::move(open).value();
  struct VersionHandle {
    trellis::http::Version version;
    metrics::Counter* handle;
  };
  for (VersionHandle v : {VersionHandle{trellis::http::Version::http10, &m.requests_http10},
                          VersionHandle{trellis::http::Version::http11, &m.requests_http11},
                          VersionHandle{trellis::http::Version::http2, &m.requests_http2}}) {
    auto c = requests.with_labels({dir, std::string(trellis::http::version_name(v.version))});
    if (!c.ok()) return c.error();
    *v.handle = std::move(c).value();
  }
  for (size_t i = 0; i < kMalformedReasonCount; ++i) {
    auto c = malformed.with_labels(
        {dir, std::string(malformed_reason_name(static_cast<MalformedReason>(i)))});
    if (!c.ok()) return c.error();
    m.malformed[i] = std::move(c).value();
  }
  return m;
}

}  // namespace trellis::proxy::downstream
