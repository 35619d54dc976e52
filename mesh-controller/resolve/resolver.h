// GAMMA route resolution: the cluster's Namespaces, Services, EndpointSlices,
// Pods, HTTPRoutes and GRPCRoutes in, one route table per client namespace and
// a status per route out (Gateway API v1.6.1, GEP-1294; docs/route-table.md).
//
// The Resolver holds the current world, fed by informers through upsert_* and
// remove_*; each call returns what it may have changed (conservatively: updates
// to fields no table reads change nothing): the client namespaces whose table
// may differ and the routes whose status may differ. Tables are computed on
// demand, per client namespace, and cached until a change touches them.
// Everything namespace-independent (every Service's frontend with its producer
// routes, every Service's endpoints) is rendered per Service, lazily: each
// changed Service once at the next compute(), however many updates came in
// between; the result is shared by all tables (table.h). A namespace only
// re-renders the Services its own consumer routes attach to.
//
// Rules (the choices the spec leaves open are marked *):
// - A parentRef is ours when it is kind Service in group "" or "core". It
//   attaches when the Service exists, has a cluster IP (type ClusterIP, and*
//   NodePort and LoadBalancer, which are ClusterIP Services with more) and its
//   port / sectionName (a port name) name one of its TCP ports. Otherwise
//   Accepted=False, NoMatchingParent*: headless and ExternalName Services have
//   no frontend to match (UnsupportedValue is for unrecognized enum values).
//   A route whose spec failed to decode is Accepted=False, UnsupportedValue,
//   with the decoding error as the message, and attaches nowhere.
// - Producer routes (in the Service's namespace) apply to every client
//   namespace; consumer routes only to their own. For a client namespace, its
//   consumer routes replace the producer routes per Service *port** (GEP-1686
//   says consumer routes take precedence; per port keeps a consumer route on
//   port 80 from silently disabling the producer's gRPC routing on 7070, and
//   matches how the proxy picks routes: per Service port).
// - On a Service port, GRPCRoutes beat HTTPRoutes (GEP-1294), within the group
//   that applies (producer, or one namespace's consumer routes). An HTTPRoute
//   parentRef that loses on every port it covers is Accepted=False with
//   reason Conflicted* (the GEP's word; the API has no constant) and is left
//   out of the tables; one that loses on some ports stays Accepted and is
//   emitted for the others.
// - backendRefs (and RequestMirror backendRefs) must be core Services
//   (else ResolvedRefs=False, InvalidKind) that exist, are not ExternalName and
//   have the TCP port (else BackendNotFound); the rule stays in the table either
//   way, and the proxy answers 500 for that share. Cross-namespace references
//   need no ReferenceGrant in the mesh.
// - services[] lists every Service with a cluster IP, its TCP ports (a named
//   targetPort is resolved from the EndpointSlices) and the routes that apply
//   to the namespace; endpoints[] has an entry for every TCP port of every
//   Service but ExternalName ones (headless ones too, as backends), so a
//   backendRef to an existing Service port always resolves (empty entry: 503).
// - Endpoints come from the EndpointSlices labelled kubernetes.io/service-name,
//   by the Service port's name. Addresses that can never take traffic (neither
//   ready nor serving) are left out; `serving` and `terminating` are written
//   for terminating ones (the proxy's fallback when none is ready). An address
//   whose targetRef names a Pod the resolver does not know is left out: it
//   might be meshed, and a meshed pod must never be dialled in plaintext. A
//   Pod is meshed iff it has the annotation trellis.dev/proxy-version (set by
//   the injector): identity spiffe://<trust domain>/ns/<ns>/sa/<service account>.
// - Whatever the objects say, every table parses with routes::parse: rules
//   were validated when decoded, non-TCP ports and invalid IPs are dropped, and
//   a cluster IP claimed by two Services stays with the first by namespace/name.
//
// Threading: a Resolver is used from one thread. The Tables it returns are
// immutable and may be shared with any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/base/result.h"
#include "common/kube/objects.h"
#include "common/routes/route_table.h"
#include "mesh-controller/gateway/route.h"
#include "mesh-controller/resolve/table.h"

namespace trellis::controller::resolve {

// Set by the injector on every pod it injects: the pod runs our sidecar.
inline constexpr std::string_view kProxyVersionAnnotation = "trellis.dev/proxy-version";

struct Config {
  std::string trust_domain = "cluster.local";  // of the SPIFFE IDs in tables
};

struct RouteKey {
  routes::RouteKind kind = routes::RouteKind::http_route;
  std::string ns;
  std::string name;

  static RouteKey of(const gateway::Route& route);
  // "HTTPRoute ns/name", for logs.
  std::string str() const;
};
bool operator<(const RouteKey& a, const RouteKey& b);
bool operator==(const RouteKey& a, const RouteKey& b);

// What one update may have changed.
struct Changes {
  bool all_namespaces = false;      // every client namespace's table
  std::set<std::string> namespaces;  // these client namespaces' tables (when not all)
  std::set<RouteKey> routes;         // these routes' status

  bool touches(std::string_view ns) const;
  bool empty() const { return !all_namespaces && namespaces.empty() && routes.empty(); }
  void merge(const Changes& other);
};

class Resolver {
 public:
  // Fails for an invalid trust domain ("trust_domain: invalid value 'A' (want
  // lowercase letters, digits, '.', '-' and '_')").
  static Result<std::unique_ptr<Resolver>> create(Config config);

  Changes upsert_namespace(const kube::Namespace& ns);
  Changes remove_namespace(std::string_view name);
  Changes upsert_service(kube::Service service);
  Changes remove_service(std::string_view ns, std::string_view name);
  Changes upsert_endpoint_slice(kube::EndpointSlice slice);
  Changes remove_endpoint_slice(std::string_view ns, std::string_view name);
  Changes upsert_pod(const kube::Pod& pod);
  Changes remove_pod(std::string_view ns, std::string_view name);
  Changes upsert_route(gateway::Route route);  // HTTPRoute or GRPCRoute, by route.kind
  Changes remove_route(const RouteKey& key);

  // The table for clients in namespace `ns` (any namespace, known or not).
  std::shared_ptr<const Table> compute(std::string_view ns);

  // This controller's status.parents[] entries for the route: one per Service
  // parentRef, in spec order, with conditions Accepted and (unless the spec
  // failed to decode) ResolvedRefs; lastTransitionTime is left for
  // gateway::status_patch. Empty for an unknown route.
  std::vector<gateway::RouteParentStatus> status(const RouteKey& key) const;
  const gateway::Route* route(const RouteKey& key) const;
  // The Namespaces seen (upsert_namespace), sorted.
  std::vector<std::string> namespaces() const;

  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;
  ~Resolver();

 private:
  struct PodIdentity {
    bool meshed = false;
    std::string service_account;
    bool operator==(const PodIdentity& o) const {
      return meshed == o.meshed && service_account == o.service_account;
    }
  };
  // One parentRef of a route, resolved.
  struct ParentOutcome {
    bool ours = false;       // a Service parentRef
    std::string service;     // its key, "namespace/name"
    bool consumer = false;   // the Service is in another namespace than the route
    bool attached = false;
    bool all_ports = false;  // no port and no sectionName: every port
    std::vector<uint16_t> ports;  // the TCP ports covered, when attached
    std::string reason;      // Accepted=False, when not attached
    std::string message;
    bool operator==(const ParentOutcome& o) const;
  };
  struct Resolution {
    std::vector<ParentOutcome> parents;
    std::set<std::string> backends;  // Service keys referenced
    bool refs_resolved = true;
    std::string refs_reason;
    std::string refs_message;
  };
  struct RouteState {
    gateway::Route route;
    Resolution resolution;
  };
  struct Attachment {
    RouteKey route;
    size_t parent = 0;  // index into the route's parentRefs
    bool operator<(const Attachment& o) const;
  };
  // What an update touched, to settle at the end of it.
  struct Pending {
    std::set<RouteKey> resolve;
    std::set<std::string> render;  // Services whose entry must be rendered again
    Changes changes;
  };

  explicit Resolver(Config config);

  Changes settle(Pending& pending);
  void remove_endpoint_slice_entry(const std::string& key, Pending& pending);
  void render_pod_services(const std::string& pod, Pending& pending);
  void cluster_ips(const kube::Service& service, bool add, Pending& pending);
  // Re-resolves a route against the current world; `content_changed`: its
  // spec changed too, so its rendered rules must be redone.
  void resolve_route(const RouteKey& key, bool content_changed, Pending& pending);
  void note_attachments(const RouteKey& key, const Resolution& resolution, Pending& pending);
  void index_route(const RouteKey& key, const Resolution& resolution, bool add);
  const ParentOutcome& outcome(const Attachment& attachment) const;
  Resolution resolve(const gateway::Route& route) const;
  ParentOutcome resolve_parent(const gateway::Route& route,
                               const gateway::ParentReference& ref) const;
  void check_backend(const routes::BackendObjectReference& ref, const std::string& where,
                     Resolution& out) const;
  // The GRPCRoute that beats an HTTPRoute attachment on `port`, if any.
  const RouteKey* grpc_winner(const std::string& service_key, const Attachment& attachment,
                              uint16_t port) const;
  std::shared_ptr<const ServiceEntry> build_entry(const std::string& service_key) const;
  // One entry per port; fills `named_targets` (port name -> target port number).
  std::vector<routes::Endpoints> render_endpoints(
      const kube::Service& service, const std::vector<const kube::ServicePort*>& ports,
      std::map<std::string, uint16_t>& named_targets) const;
  // The routes attached to the Service for clients in `client_ns` (nullptr:
  // the producer routes, as every namespace without consumer routes sees them).
  std::vector<routes::Route> routes_for(const std::string& service_key,
                                        const routes::Service& frontend,
                                        const std::string* client_ns) const;
  std::shared_ptr<const Snapshot> snapshot();

  Config config_;
  std::set<std::string> namespaces_;
  std::map<std::string, kube::Service> services_;
  std::map<std::string, kube::EndpointSlice> slices_;
  std::map<std::string, std::set<std::string>> slices_by_service_;
  std::map<std::string, std::set<std::string>> slices_by_pod_;
  std::unordered_map<std::string, PodIdentity> pods_;
  std::map<RouteKey, RouteState> routes_;
  std::map<std::string, std::set<RouteKey>> routes_by_parent_;   // Service key -> routes
  std::map<std::string, std::set<RouteKey>> routes_by_backend_;  // Service key -> routes
  std::map<std::string, std::set<Attachment>> attachments_;      // Service key -> attached
  // Client namespace -> Services its consumer routes attach to.
  std::map<std::string, std::set<std::string>> consumer_services_;
  // Cluster IP (binary) -> Services claiming it; the first keeps it.
  std::map<std::string, std::set<std::string>> services_by_ip_;
  std::map<std::string, std::shared_ptr<const ServiceEntry>> entries_;
  std::set<std::string> dirty_services_;      // entries to render before the next snapshot
  std::shared_ptr<const Snapshot> snapshot_;  // null when a Service is dirty
  std::map<std::string, std::shared_ptr<const Table>, std::less<>> tables_;
};

}  // namespace trellis::controller::resolve
