// The route-table stream's one request, GET /v1/route-table, and which
// client namespace's table it may receive.
//
// A sidecar never chooses its namespace: it is the namespace of the peer's
// SPIFFE ID (spiffe://<trust domain>/ns/<ns>/sa/<sa>), proven by its mTLS
// certificate. Until the identity service exists the transport proves
// nothing, so the namespace can only come from the `namespace` query
// parameter, and only when trellis-controller runs with
// --insecure-namespace-from-query (tests, the sandbox); without the flag such
// requests are refused with 403.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/http/message.h"

namespace trellis::controller::stream {

inline constexpr std::string_view kRouteTablePath = "/v1/route-table";
// Newline-delimited JSON: one route table per line.
inline constexpr std::string_view kRouteTableContentType = "application/x-ndjson";
inline constexpr std::string_view kNamespaceParameter = "namespace";

struct RequestPolicy {
  bool insecure_namespace_from_query = false;
  std::string trust_domain = "cluster.local";
};

// The client namespace whose table the request streams, or why the request is
// refused, with Error::code the HTTP status to answer:
//   404 "no such path '/x': the route-table stream is GET /v1/route-table"
//   405 "method 'POST' not allowed: the route-table stream is GET /v1/route-table"
//   403 the peer identity is not a workload of the trust domain, or disagrees
//       with the query parameter; or there is no identity and no insecure flag
//   400 "missing query parameter 'namespace'", "query parameter 'namespace':
//       invalid value 'A_B' (want a DNS label: ...)"
// `peer_identity` is the SPIFFE ID the transport verified; nullopt without mTLS.
Result<std::string> client_namespace(const http::RequestHead& head,
                                     const std::optional<std::string>& peer_identity,
                                     const RequestPolicy& policy);

// The namespace of a workload SPIFFE ID of `trust_domain`. Error: "peer
// identity 'x' is not a workload identity of trust domain 'cluster.local'
// (want spiffe://cluster.local/ns/<namespace>/sa/<service account>)".
Result<std::string> identity_namespace(std::string_view spiffe_id, std::string_view trust_domain);

// The first value of query parameter `name` in a request target, form-decoded
// (%XX is the octet, '+' a space, a '%' without two hex digits stays literal);
// "" for a parameter without '='; nullopt when absent.
std::optional<std::string> query_parameter(std::string_view target, std::string_view name);

// RFC 1123 label, as Kubernetes namespaces are: 1-63 of [a-z0-9-], starting
// and ending with a letter or digit. Error: "invalid value 'A_B' (want a DNS
// label: 1-63 lowercase letters, digits and '-', starting and ending with a
// letter or digit)".
Status check_dns_label(std::string_view value);

}  // namespace trellis::controller::stream
