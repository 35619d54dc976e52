// The world the controller scale bench builds in the API server, and the
// HTTPRoute updates it measures: object names, request bodies and which
// route-table streams each update affects. Pure functions of a Scale, so the
// populate phase and the measuring phase (and the unit test) agree.
//
//   namespaces   bench-00 .. bench-NN
//   Service k    svc-00000 ..  in namespace k % namespaces, ClusterIP (allocated),
//                no selector, port http 80 → 8080
//   slice of k   svc-00000-bench: endpoints_per_service ready addresses without
//                targetRef (so no Pods are needed: the resolver drops addresses
//                whose targetRef names an unknown Pod), port http 8080, labelled
//                kubernetes.io/service-name and a managed-by of our own so that
//                kube-controller-manager leaves it alone
//   producer route r   route-p-00000, in Service r's namespace, parent Service r
//   consumer route c   route-c-00000, in namespace c % namespaces, parent a
//                Service of another namespace (from the top of the index range)
// Every route has two rules; the first sets header x-bench-rev with a
// RequestHeaderModifier, whose value an update replaces with a marker unique
// to that update, so that a stream can recognise the table that contains it.
//
// Stream i reads the table of namespace i % namespaces.
#pragma once

#include <string>
#include <vector>

#include "common/base/result.h"

namespace trellis::bench::controller {

struct Scale {
  int namespaces = 50;
  int services = 10000;
  int endpoints_per_service = 5;
  int routes = 2000;           // producer + consumer
  int consumer_routes = 200;   // of `routes`
  int streams = 200;
};

// Exact errors naming the flag: "--services: must be at least --namespaces (50), got 10",
// "--consumer-routes: must not exceed --routes (10), got 20", ...
Status validate(const Scale& scale);

inline constexpr char kManagedBy[] = "bench.trellis.dev";
inline constexpr char kRevisionHeader[] = "x-bench-rev";
inline constexpr char kInitialRevision[] = "r0";

std::string namespace_name(int index);  // "bench-07"
std::string service_name(int index);    // "svc-00042"
int service_namespace(const Scale& scale, int service);
// The IPv4 address of endpoint `index` over all Services: 10.100.0.0 onwards.
std::string endpoint_ip(int index);

struct RoutePlan {
  bool consumer = false;
  int index = 0;         // within its kind
  std::string ns;        // the route's namespace
  std::string name;
  int parent = 0;        // parent Service index
  int backends[2] = {0, 0};  // Service indices, weights 90 and 10
};

int producer_routes(const Scale& scale);
RoutePlan producer_route(const Scale& scale, int index);
RoutePlan consumer_route(const Scale& scale, int index);
// Every route, producers first.
std::vector<RoutePlan> all_routes(const Scale& scale);

std::string namespace_body(int index);
std::string service_body(const Scale& scale, int service);
std::string endpoint_slice_body(const Scale& scale, int service);
std::string route_body(const Scale& scale, const RoutePlan& route);
// JSON Patch (RFC 6902) setting the first rule's x-bench-rev value.
std::string revision_patch(const std::string& value);

struct Update {
  int number = 0;  // 0-based
  RoutePlan route;
  std::string marker;         // the new header value, unique to this update
  std::vector<int> streams;   // the stream indices whose table must change
};

// Update `number` of the measuring phase: every `consumer_every`-th update
// (1-based; 0 for never) changes a consumer route in a namespace with streams,
// the others a producer route. The marker is "tbench-<run>-u<number, 5
// digits>z": no marker is a substring of another, and a rerun on the same
// world (whose routes carry the last run's markers) still changes every route.
// `run` must be lowercase letters and digits.
Update plan_update(const Scale& scale, int number, int consumer_every, const std::string& run);

}  // namespace trellis::bench::controller
