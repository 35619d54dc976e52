#include "mesh-controller/resolve/resolver.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <unordered_set>
#include <utility>

#include "mesh-controller/gateway/status.h"

namespace trellis::controller::resolve {
namespace {

namespace reason = gateway::reason;
namespace condition = gateway::condition;

// The address in binary form (4 or 16 bytes), or nullopt when it is not an IP.
std::optional<std::string> ip_bytes(std::string_view text) {
  char buf[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  unsigned char out[16];
  if (inet_pton(AF_INET, buf, out) == 1) return std::string(reinterpret_cast<char*>(out), 4);
  if (inet_pton(AF_INET6, buf, out) == 1) return std::string(reinterpret_cast<char*>(out), 16);
  return std::nullopt;
}

// The Service's TCP ports with distinct numbers: the proxy carries TCP only,
// and a UDP port may share a number with a TCP one.
std::vector<const kube::ServicePort*> tcp_ports(const kube::Service& service) {
  std::vector<const kube::ServicePort*> out;
  for (const kube::ServicePort& p : service.ports) {
    if (p.protocol != "TCP") continue;
    bool seen = std::any_of(out.begin(), out.end(),
                            [&](const kube::ServicePort* q) { return q->port == p.port; });
    if (!seen) out.push_back(&p);
  }
  return out;
}

bool has_cluster_ip(const kube::Service& service) {
  if (service.type == "ExternalName") return false;
  return std::any_of(service.cluster_ips.begin(), service.cluster_ips.end(),
                     [](const std::string& ip) { return ip_bytes(ip).has_value(); });
}

// The fields of a Service that tables and resolution read.
bool same_service(const kube::Service& a, const kube::Service& b) {
  if (std::tie(a.type, a.cluster_ip, a.cluster_ips) !=
          std::tie(b.type, b.cluster_ip, b.cluster_ips) ||
      a.ports.size() != b.ports.size()) {
    return false;
  }
  for (size_t i = 0; i < a.ports.size(); ++i) {
    const kube::ServicePort& p = a.ports[i];
    const kube::ServicePort& q = b.ports[i];
    if (std::tie(p.name, p.protocol, p.port, p.target_port, p.app_protocol) !=
        std::tie(q.name, q.protocol, q.port, q.target_port, q.app_protocol)) {
      return false;
    }
  }
  return true;
}

// The fields of an EndpointSlice that tables read.
bool same_slice(const kube::EndpointSlice& a, const kube::EndpointSlice& b) {
  if (a.service_name() != b.service_name() || a.address_type != b.address_type ||
      a.endpoints.size() != b.endpoints.size() || a.ports.size() != b.ports.size()) {
    return false;
  }
  for (size_t i = 0; i < a.ports.size(); ++i) {
    const kube::EndpointPort& p = a.ports[i];
    const kube::EndpointPort& q = b.ports[i];
    if (std::tie(p.name, p.port, p.protocol) != std::tie(q.name, q.port, q.protocol)) return false;
  }
  for (size_t i = 0; i < a.endpoints.size(); ++i) {
    const kube::Endpoint& e = a.endpoints[i];
    const kube::Endpoint& f = b.endpoints[i];
    if (std::tie(e.addresses, e.conditions.ready, e.conditions.serving, e.conditions.terminating) !=
            std::tie(f.addresses, f.conditions.ready, f.conditions.serving,
                     f.conditions.terminating) ||
        e.target_ref.has_value() != f.target_ref.has_value()) {
      return false;
    }
    const std::optional<kube::ObjectReference>& r = e.target_ref;
    const std::optional<kube::ObjectReference>& q = f.target_ref;
    if (r && std::tie(r->kind, r->namespace_, r->name) !=
                 std::tie(q->kind, q->namespace_, q->name)) {
      return false;
    }
  }
  return true;
}

// The fields of a route that tables and resolution read.
bool same_spec(const gateway::Route& a, const gateway::Route& b) {
  return std::tie(a.parent_refs, a.http_rules, a.grpc_rules, a.spec_error,
                  a.metadata.creation_timestamp, a.creation_time_ns) ==
         std::tie(b.parent_refs, b.http_rules, b.grpc_rules, b.spec_error,
                  b.metadata.creation_timestamp, b.creation_time_ns);
}

// The pod an endpoint's targetRef names, as "namespace/name", or "".
std::string pod_key(const kube::EndpointSlice& slice, const kube::Endpoint& endpoint) {
  if (!endpoint.target_ref || endpoint.target_ref->kind != "Pod") return {};
  const kube::ObjectReference& ref = *endpoint.target_ref;
  return kube::object_key(ref.namespace_.empty() ? slice.metadata.namespace_ : ref.namespace_,
                          ref.name);
}

std::string slice_service(const kube::EndpointSlice& slice) {
  std::string name = slice.service_name();
  return name.empty() ? std::string() : kube::object_key(slice.metadata.namespace_, name);
}

// "GRPCRoute ns/name" / "example.com/Foo" / "Service".
std::string group_kind(const std::string& group, const std::string& kind) {
  return group.empty() ? kind : group + "/" + kind;
}

std::string port_list(const std::vector<uint16_t>& ports) {
  std::string out = ports.size() == 1 ? "port " : "ports ";
  for (size_t i = 0; i < ports.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(ports[i]);
  }
  return out;
}

bool valid_trust_domain(std::string_view s) {
  return !s.empty() && s.size() <= 255 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
  });
}

template <typename Map, typename Key, typename Value>
void erase_from(Map& map, const Key& key, const Value& value) {
  auto it = map.find(key);
  if (it == map.end()) return;
  it->second.erase(value);
  if (it->second.empty()) map.erase(it);
}

}  // namespace

// ---------------------------------------------------------------- keys and changes

RouteKey RouteKey::of(const gateway::Route& route) {
  return RouteKey{route.kind, route.metadata.namespace_, route.metadata.name};
}

std::string RouteKey::str() const {
  return std::string(routes::name(kind)) + " " + ns + "/" + name;
}

bool operator<(const RouteKey& a, const RouteKey& b) {
  return std::tie(a.ns, a.name, a.kind) < std::tie(b.ns, b.name, b.kind);
}

bool operator==(const RouteKey& a, const RouteKey& b) {
  return std::tie(a.ns, a.name, a.kind) == std::tie(b.ns, b.name, b.kind);
}

bool Changes::touches(std::string_view ns) const {
  return all_namespaces || namespaces.find(std::string(ns)) != namespaces.end();
}

void Changes::merge(const Changes& other) {
  all_namespaces = all_namespaces || other.all_namespaces;
  namespaces.insert(other.namespaces.begin(), other.namespaces.end());
  routes.insert(other.routes.begin(), other.routes.end());
}

bool Resolver::ParentOutcome::operator==(const ParentOutcome& o) const {
  return std::tie(ours, service, consumer, attached, all_ports, ports, reason, message) ==
         std::tie(o.ours, o.service, o.consumer, o.attached, o.all_ports, o.ports, o.reason,
                  o.message);
}

bool Resolver::Attachment::operator<(const Attachment& o) const {
  return std::tie(route, parent) < std::tie(o.route, o.parent);
}

// ---------------------------------------------------------------- construction

Result<std::unique_ptr<Resolver>> Resolver::create(Config config) {
  if (!valid_trust_domain(config.trust_domain)) {
    return make_error("trust_domain: invalid value '" + config.trust_domain +
                      "' (want lowercase letters, digits, '.', '-' and '_')");
  }
  return std::unique_ptr<Resolver>(new Resolver(std::move(config)));
}

Resolver::Resolver(Config config) : config_(std::move(config)) {}
Resolver::~Resolver() = default;

// ---------------------------------------------------------------- updates

Changes Resolver::upsert_namespace(const kube::Namespace& ns) {
  Changes changes;
  if (namespaces_.insert(ns.metadata.name).second) changes.namespaces.insert(ns.metadata.name);
  return changes;
}

Changes Resolver::remove_namespace(std::string_view name) {
  Changes changes;
  if (namespaces_.erase(std::string(name)) > 0) {
    changes.namespaces.insert(std::string(name));
    tables_.erase(std::string(name));
  }
  return changes;
}

Changes Resolver::upsert_service(kube::Service service) {
  std::string key = service.metadata.key();
  Pending pending;
  auto it = services_.find(key);
  if (it != services_.end()) {
    bool same = same_service(it->second, service);
    it->second = std::move(service);
    if (same) return {};
    cluster_ips(it->second, false, pending);
  } else {
    it = services_.emplace(key, std::move(service)).first;
  }
  cluster_ips(it->second, true, pending);
  pending.render.insert(key);
  for (const auto* index : {&routes_by_parent_, &routes_by_backend_}) {
    if (auto r = index->find(key); r != index->end()) {
      pending.resolve.insert(r->second.begin(), r->second.end());
    }
  }
  return settle(pending);
}

Changes Resolver::remove_service(std::string_view ns, std::string_view name) {
  std::string key = kube::object_key(ns, name);
  auto it = services_.find(key);
  if (it == services_.end()) return {};
  Pending pending;
  cluster_ips(it->second, false, pending);
  services_.erase(it);
  pending.render.insert(key);
  for (const auto* index : {&routes_by_parent_, &routes_by_backend_}) {
    if (auto r = index->find(key); r != index->end()) {
      pending.resolve.insert(r->second.begin(), r->second.end());
    }
  }
  return settle(pending);
}

Changes Resolver::upsert_endpoint_slice(kube::EndpointSlice slice) {
  std::string key = slice.metadata.key();
  if (auto it = slices_.find(key); it != slices_.end() && same_slice(it->second, slice)) {
    it->second = std::move(slice);
    return {};
  }
  Pending pending;
  remove_endpoint_slice_entry(key, pending);
  std::string service = slice_service(slice);
  if (!service.empty()) {
    slices_by_service_[service].insert(key);
    pending.render.insert(service);
  }
  for (const kube::Endpoint& e : slice.endpoints) {
    std::string pod = pod_key(slice, e);
    if (!pod.empty()) slices_by_pod_[pod].insert(key);
  }
  slices_.emplace(key, std::move(slice));
  return settle(pending);
}

Changes Resolver::remove_endpoint_slice(std::string_view ns, std::string_view name) {
  Pending pending;
  remove_endpoint_slice_entry(kube::object_key(ns, name), pending);
  return settle(pending);
}

void Resolver::remove_endpoint_slice_entry(const std::string& key, Pending& pending) {
  auto it = slices_.find(key);
  if (it == slices_.end()) return;
  const kube::EndpointSlice& slice = it->second;
  std::string service = slice_service(slice);
  if (!service.empty()) {
    erase_from(slices_by_service_, service, key);
    pending.render.insert(service);
  }
  for (const kube::Endpoint& e : slice.endpoints) {
    std::string pod = pod_key(slice, e);
    if (!pod.empty()) erase_from(slices_by_pod_, pod, key);
  }
  slices_.erase(it);
}

Changes Resolver::upsert_pod(const kube::Pod& pod) {
  std::string key = pod.metadata.key();
  PodIdentity identity;
  identity.meshed = pod.metadata.annotations.count(kProxyVersionAnnotation) > 0;
  identity.service_account =
      pod.service_account_name.empty() ? "default" : pod.service_account_name;
  auto [it, inserted] = pods_.try_emplace(key, identity);
  if (!inserted) {
    if (it->second == identity) return {};
    it->second = identity;
  }
  Pending pending;
  render_pod_services(key, pending);
  return settle(pending);
}

Changes Resolver::remove_pod(std::string_view ns, std::string_view name) {
  std::string key = kube::object_key(ns, name);
  if (pods_.erase(key) == 0) return {};
  Pending pending;
  render_pod_services(key, pending);
  return settle(pending);
}

void Resolver::render_pod_services(const std::string& pod, Pending& pending) {
  auto it = slices_by_pod_.find(pod);
  if (it == slices_by_pod_.end()) return;
  for (const std::string& slice_key : it->second) {
    std::string service = slice_service(slices_.at(slice_key));
    if (!service.empty()) pending.render.insert(service);
  }
}

Changes Resolver::upsert_route(gateway::Route route) {
  RouteKey key = RouteKey::of(route);
  Pending pending;
  pending.changes.routes.insert(key);  // the object changed: its status may need writing
  auto it = routes_.find(key);
  if (it != routes_.end()) {
    bool same = same_spec(it->second.route, route);
    it->second.route = std::move(route);
    if (same) return pending.changes;
  } else {
    routes_.emplace(key, RouteState{std::move(route), Resolution{}});
  }
  resolve_route(key, true, pending);
  return settle(pending);
}

Changes Resolver::remove_route(const RouteKey& key) {
  auto it = routes_.find(key);
  if (it == routes_.end()) return {};
  Pending pending;
  const Resolution& old = it->second.resolution;
  index_route(key, old, false);
  note_attachments(key, old, pending);
  routes_.erase(it);
  return settle(pending);
}

// ---------------------------------------------------------------- resolution

void Resolver::resolve_route(const RouteKey& key, bool content_changed, Pending& pending) {
  RouteState& state = routes_.at(key);
  Resolution fresh = resolve(state.route);
  bool same_parents = fresh.parents == state.resolution.parents;
  pending.changes.routes.insert(key);
  index_route(key, state.resolution, false);
  if (same_parents && !content_changed) {
    // Only ResolvedRefs can differ, and no table reads it.
    state.resolution = std::move(fresh);
    index_route(key, state.resolution, true);
    return;
  }
  note_attachments(key, state.resolution, pending);
  state.resolution = std::move(fresh);
  index_route(key, state.resolution, true);
  note_attachments(key, state.resolution, pending);
}

// The tables and statuses an attachment of `key` affects: the producer render of
// its Service or the consumer's namespace, and (GRPCRoute beats HTTPRoute) the
// status of every route attached to the same Service.
void Resolver::note_attachments(const RouteKey& key, const Resolution& resolution,
                                Pending& pending) {
  for (const ParentOutcome& o : resolution.parents) {
    if (!o.attached) continue;
    if (o.consumer) {
      pending.changes.namespaces.insert(key.ns);
    } else {
      pending.render.insert(o.service);
    }
    if (auto it = attachments_.find(o.service); it != attachments_.end()) {
      for (const Attachment& a : it->second) pending.changes.routes.insert(a.route);
    }
  }
}

void Resolver::index_route(const RouteKey& key, const Resolution& resolution, bool add) {
  for (size_t i = 0; i < resolution.parents.size(); ++i) {
    const ParentOutcome& o = resolution.parents[i];
    if (!o.ours) continue;
    if (add) {
      routes_by_parent_[o.service].insert(key);
    } else {
      erase_from(routes_by_parent_, o.service, key);
    }
    if (!o.attached) continue;
    Attachment attachment{key, i};
    if (add) {
      attachments_[o.service].insert(attachment);
      if (o.consumer) consumer_services_[key.ns].insert(o.service);
      continue;
    }
    erase_from(attachments_, o.service, attachment);
    if (!o.consumer) continue;
    // Other consumer routes of the namespace may still attach to the Service.
    bool still = false;
    if (auto it = attachments_.find(o.service); it != attachments_.end()) {
      still = std::any_of(it->second.begin(), it->second.end(), [&](const Attachment& a) {
        return a.route.ns == key.ns && outcome(a).consumer;
      });
    }
    if (!still) erase_from(consumer_services_, key.ns, o.service);
  }
  for (const std::string& backend : resolution.backends) {
    if (add) {
      routes_by_backend_[backend].insert(key);
    } else {
      erase_from(routes_by_backend_, backend, key);
    }
  }
}

const Resolver::ParentOutcome& Resolver::outcome(const Attachment& a) const {
  return routes_.at(a.route).resolution.parents.at(a.parent);
}

Resolver::Resolution Resolver::resolve(const gateway::Route& route) const {
  Resolution r;
  for (const gateway::ParentReference& ref : route.parent_refs) {
    r.parents.push_back(resolve_parent(route, ref));
  }
  auto rules = [&](const auto& list) {
    for (size_t i = 0; i < list.size(); ++i) {
      std::string rule = "spec.rules[" + std::to_string(i) + "]";
      auto mirrors = [&](const std::vector<routes::HTTPRouteFilter>& filters,
                         const std::string& where) {
        for (size_t f = 0; f < filters.size(); ++f) {
          if (!filters[f].request_mirror) continue;
          check_backend(filters[f].request_mirror->backend_ref,
                        where + ".filters[" + std::to_string(f) + "].requestMirror.backendRef", r);
        }
      };
      mirrors(list[i].filters, rule);
      for (size_t b = 0; b < list[i].backend_refs.size(); ++b) {
        std::string where = rule + ".backendRefs[" + std::to_string(b) + "]";
        check_backend(list[i].backend_refs[b].ref, where, r);
        mirrors(list[i].backend_refs[b].filters, where);
      }
    }
  };
  rules(route.http_rules);
  rules(route.grpc_rules);
  return r;
}

Resolver::ParentOutcome Resolver::resolve_parent(const gateway::Route& route,
                                                 const gateway::ParentReference& ref) const {
  ParentOutcome o;
  if (!ref.is_service()) return o;  // a Gateway or another kind: not ours
  o.ours = true;
  std::string ns = ref.ns.value_or(route.metadata.namespace_);
  o.service = kube::object_key(ns, ref.name);
  o.consumer = ns != route.metadata.namespace_;
  auto refuse = [&](std::string_view why, std::string message) {
    o.reason = std::string(why);
    o.message = std::move(message);
    return o;
  };
  if (!route.spec_error.empty()) return refuse(reason::kUnsupportedValue, route.spec_error);
  auto it = services_.find(o.service);
  std::string service = "Service " + o.service;
  if (it == services_.end()) return refuse(reason::kNoMatchingParent, service + " not found");
  const kube::Service& s = it->second;
  if (s.type == "ExternalName") {
    return refuse(reason::kNoMatchingParent,
                  service + " is of type ExternalName; mesh routes attach to Services with a "
                            "cluster IP");
  }
  if (!has_cluster_ip(s)) {
    return refuse(reason::kNoMatchingParent,
                  service + " is headless (clusterIP None); mesh routes attach to Services with "
                            "a cluster IP");
  }
  std::vector<const kube::ServicePort*> ports = tcp_ports(s);
  if (ref.section_name) {
    auto p = std::find_if(ports.begin(), ports.end(), [&](const kube::ServicePort* q) {
      return q->name == *ref.section_name;
    });
    if (p == ports.end()) {
      return refuse(reason::kNoMatchingParent,
                    service + " has no TCP port named '" + *ref.section_name + "'");
    }
    if (ref.port && *ref.port != (*p)->port) {
      return refuse(reason::kNoMatchingParent,
                    service + " port '" + *ref.section_name + "' is " +
                        std::to_string((*p)->port) + ", not " + std::to_string(*ref.port));
    }
    o.ports.push_back(static_cast<uint16_t>((*p)->port));
  } else if (ref.port) {
    bool found = std::any_of(ports.begin(), ports.end(),
                             [&](const kube::ServicePort* q) { return q->port == *ref.port; });
    if (!found) {
      return refuse(reason::kNoMatchingParent,
                    service + " has no TCP port " + std::to_string(*ref.port));
    }
    o.ports.push_back(*ref.port);
  } else {
    if (ports.empty()) return refuse(reason::kNoMatchingParent, service + " has no TCP port");
    for (const kube::ServicePort* p : ports) o.ports.push_back(static_cast<uint16_t>(p->port));
    std::sort(o.ports.begin(), o.ports.end());
    o.all_ports = true;
  }
  o.attached = true;
  return o;
}

void Resolver::check_backend(const routes::BackendObjectReference& ref, const std::string& where,
                             Resolution& out) const {
  auto fail = [&](std::string_view why, const std::string& message) {
    if (out.refs_resolved) out.refs_reason = std::string(why);
    out.refs_resolved = false;
    if (!out.refs_message.empty()) out.refs_message += "; ";
    out.refs_message += where + ": " + message;
  };
  if (!(ref.group.empty() || ref.group == "core") || ref.kind != "Service") {
    fail(reason::kInvalidKind,
         "unsupported kind " + group_kind(ref.group, ref.kind) + " (want Service)");
    return;
  }
  std::string key = kube::object_key(ref.ns, ref.name);
  out.backends.insert(key);
  auto it = services_.find(key);
  if (it == services_.end()) {
    fail(reason::kBackendNotFound, "Service " + key + " not found");
  } else if (it->second.type == "ExternalName") {
    fail(reason::kBackendNotFound,
         "Service " + key + " is of type ExternalName, which the mesh does not route to");
  } else if (ref.port) {
    std::vector<const kube::ServicePort*> ports = tcp_ports(it->second);
    bool found = std::any_of(ports.begin(), ports.end(),
                             [&](const kube::ServicePort* p) { return p->port == *ref.port; });
    if (!found) fail(reason::kBackendNotFound, "Service " + key + " has no TCP port " +
                                                   std::to_string(*ref.port));
  }
}

const RouteKey* Resolver::grpc_winner(const std::string& service_key,
                                      const Attachment& attachment, uint16_t port) const {
  auto it = attachments_.find(service_key);
  if (it == attachments_.end()) return nullptr;
  const ParentOutcome& mine = outcome(attachment);
  for (const Attachment& a : it->second) {
    if (a.route.kind != routes::RouteKind::grpc_route) continue;
    const ParentOutcome& o = outcome(a);
    // The same group: producer routes, or consumer routes of the same namespace.
    bool same_group =
        o.consumer == mine.consumer && (!o.consumer || a.route.ns == attachment.route.ns);
    if (same_group && std::binary_search(o.ports.begin(), o.ports.end(), port)) return &a.route;
  }
  return nullptr;
}

// ---------------------------------------------------------------- status

std::vector<gateway::RouteParentStatus> Resolver::status(const RouteKey& key) const {
  std::vector<gateway::RouteParentStatus> out;
  auto it = routes_.find(key);
  if (it == routes_.end()) return out;
  const gateway::Route& route = it->second.route;
  const Resolution& resolution = it->second.resolution;
  auto make = [&](std::string_view type, bool ok, std::string_view why, std::string message) {
    gateway::Condition c;
    c.type = std::string(type);
    c.status = ok ? "True" : "False";
    c.reason = std::string(why);
    c.message = std::move(message);
    c.observed_generation = route.metadata.generation;
    return c;
  };
  for (size_t i = 0; i < route.parent_refs.size() && i < resolution.parents.size(); ++i) {
    const ParentOutcome& o = resolution.parents[i];
    if (!o.ours) continue;
    gateway::RouteParentStatus entry;
    entry.parent_ref = route.parent_refs[i];
    entry.controller_name = std::string(gateway::kControllerName);
    if (!o.attached) {
      entry.conditions.push_back(make(condition::kAccepted, false, o.reason, o.message));
    } else {
      std::vector<uint16_t> lost;
      const RouteKey* winner = nullptr;
      if (key.kind == routes::RouteKind::http_route) {
        for (uint16_t port : o.ports) {
          if (const RouteKey* w = grpc_winner(o.service, Attachment{key, i}, port)) {
            lost.push_back(port);
            if (winner == nullptr) winner = w;
          }
        }
      }
      if (lost.empty()) {
        entry.conditions.push_back(make(condition::kAccepted, true, reason::kAccepted, "Accepted"));
      } else if (lost.size() == o.ports.size()) {
        entry.conditions.push_back(make(
            condition::kAccepted, false, reason::kConflicted,
            winner->str() + " takes precedence over HTTPRoutes on Service " + o.service + " " +
                port_list(lost) + " (GEP-1294: GRPCRoute wins on the same Service port)"));
      } else {
        entry.conditions.push_back(make(condition::kAccepted, true, reason::kAccepted,
                                        "Accepted; " + winner->str() + " takes precedence on " +
                                            port_list(lost)));
      }
    }
    if (route.spec_error.empty()) {
      entry.conditions.push_back(
          resolution.refs_resolved
              ? make(condition::kResolvedRefs, true, reason::kResolvedRefs,
                     "All references resolved")
              : make(condition::kResolvedRefs, false, resolution.refs_reason,
                     resolution.refs_message));
    }
    out.push_back(std::move(entry));
  }
  return out;
}

const gateway::Route* Resolver::route(const RouteKey& key) const {
  auto it = routes_.find(key);
  return it == routes_.end() ? nullptr : &it->second.route;
}

std::vector<std::string> Resolver::namespaces() const {
  return std::vector<std::string>(namespaces_.begin(), namespaces_.end());
}

// ---------------------------------------------------------------- rendering

Changes Resolver::settle(Pending& pending) {
  for (const RouteKey& key : pending.resolve) resolve_route(key, false, pending);
  // Rendering waits for the next compute(), so that a burst of updates (an
  // initial list, a rollout) renders each Service once.
  if (!pending.render.empty()) {
    dirty_services_.insert(pending.render.begin(), pending.render.end());
    snapshot_.reset();
    pending.changes.all_namespaces = true;
  }
  if (pending.changes.all_namespaces) {
    tables_.clear();
  } else {
    for (const std::string& ns : pending.changes.namespaces) tables_.erase(ns);
  }
  return std::move(pending.changes);
}

void Resolver::cluster_ips(const kube::Service& service, bool add, Pending& pending) {
  std::string key = service.metadata.key();
  for (const std::string& ip : service.cluster_ips) {
    std::optional<std::string> bytes = ip_bytes(ip);
    if (!bytes) continue;
    if (add) {
      services_by_ip_[*bytes].insert(key);
    } else {
      erase_from(services_by_ip_, *bytes, key);
    }
    // Whether the others keep the address may have changed.
    if (auto it = services_by_ip_.find(*bytes); it != services_by_ip_.end()) {
      pending.render.insert(it->second.begin(), it->second.end());
    }
  }
}

std::shared_ptr<const ServiceEntry> Resolver::build_entry(const std::string& key) const {
  auto it = services_.find(key);
  if (it == services_.end() || it->second.type == "ExternalName") return nullptr;
  const kube::Service& service = it->second;
  auto entry = std::make_shared<ServiceEntry>();
  entry->key = key;
  routes::Service& frontend = entry->frontend;
  frontend.ns = service.metadata.namespace_;
  frontend.name = service.metadata.name;
  std::set<std::string> seen;
  for (const std::string& ip : service.cluster_ips) {
    std::optional<std::string> bytes = ip_bytes(ip);
    if (!bytes) continue;  // "None": headless
    const std::set<std::string>& claims = services_by_ip_.at(*bytes);
    // Dual stack means at most two; the table refuses more, and repeats.
    if (*claims.begin() == key && seen.insert(*bytes).second && seen.size() <= 2) {
      frontend.cluster_ips.push_back(ip);
    }
  }
  entry->listed = !frontend.cluster_ips.empty();

  std::vector<const kube::ServicePort*> ports = tcp_ports(service);
  std::map<std::string, uint16_t> named_targets;
  std::vector<routes::Endpoints> endpoints = render_endpoints(service, ports, named_targets);
  for (const kube::ServicePort* p : ports) {
    routes::ServicePort port;
    port.name = p->name;
    port.port = static_cast<uint16_t>(p->port);
    if (p->target_port.is_int) {
      port.target_port = static_cast<uint16_t>(p->target_port.int_value);
    } else {
      auto named = named_targets.find(p->name);
      port.target_port = named != named_targets.end() ? named->second : port.port;
    }
    if (p->app_protocol && !p->app_protocol->empty()) port.app_protocol = p->app_protocol;
    frontend.ports.push_back(std::move(port));
  }
  if (entry->listed) {
    routes::Service with_routes = frontend;
    with_routes.routes = routes_for(key, frontend, nullptr);
    entry->service_json = service_json(with_routes);
  }
  if (!endpoints.empty()) entry->endpoints_json = endpoints_json(endpoints);
  entry->digest = sha256(entry->service_json + '\0' + entry->endpoints_json);
  return entry;
}

std::vector<routes::Endpoints> Resolver::render_endpoints(
    const kube::Service& service, const std::vector<const kube::ServicePort*>& ports,
    std::map<std::string, uint16_t>& named_targets) const {
  std::vector<routes::Endpoints> out(ports.size());
  std::vector<std::unordered_set<std::string>> seen(ports.size());
  for (size_t i = 0; i < ports.size(); ++i) {
    out[i].ns = service.metadata.namespace_;
    out[i].service = service.metadata.name;
    out[i].port = static_cast<uint16_t>(ports[i]->port);
  }
  auto slice_keys = slices_by_service_.find(service.metadata.key());
  if (slice_keys == slices_by_service_.end()) return out;
  for (const std::string& slice_key : slice_keys->second) {
    const kube::EndpointSlice& slice = slices_.at(slice_key);
    if (slice.address_type != "IPv4" && slice.address_type != "IPv6") continue;  // FQDN
    // The slice's port for each Service port: same name, TCP, with a number.
    std::vector<uint16_t> target(ports.size(), 0);
    for (size_t i = 0; i < ports.size(); ++i) {
      for (const kube::EndpointPort& sp : slice.ports) {
        if (sp.name == ports[i]->name && sp.protocol == "TCP" && sp.port) {
          target[i] = static_cast<uint16_t>(*sp.port);
          named_targets.emplace(ports[i]->name, target[i]);
          break;
        }
      }
    }
    for (const kube::Endpoint& e : slice.endpoints) {
      routes::EndpointAddress address;
      address.ready = e.conditions.is_ready();
      if (!address.ready && !e.conditions.is_serving()) continue;  // never eligible
      if (e.conditions.is_terminating()) {
        address.serving = e.conditions.is_serving();
        address.terminating = true;
      }
      std::string pod = pod_key(slice, e);
      if (!pod.empty()) {
        auto identity = pods_.find(pod);
        if (identity == pods_.end()) continue;  // unknown: might be meshed
        address.pod = e.target_ref->name;
        if (identity->second.meshed) {
          address.identity = "spiffe://" + config_.trust_domain + "/ns/" +
                             pod.substr(0, pod.find('/')) + "/sa/" +
                             identity->second.service_account;
        }
      }
      for (const std::string& ip : e.addresses) {
        if (!ip_bytes(ip)) continue;
        for (size_t i = 0; i < ports.size(); ++i) {
          if (target[i] == 0) continue;
          if (!seen[i].insert(ip + " " + std::to_string(target[i])).second) continue;
          address.ip = ip;
          address.port = target[i];
          out[i].addresses.push_back(address);
        }
      }
    }
  }
  return out;
}

std::vector<routes::Route> Resolver::routes_for(const std::string& service_key,
                                                const routes::Service& frontend,
                                                const std::string* client_ns) const {
  std::vector<routes::Route> out;
  auto it = attachments_.find(service_key);
  if (it == attachments_.end()) return out;
  const std::set<Attachment>& attached = it->second;
  auto covers = [&](const Attachment& a, uint16_t port) {
    const std::vector<uint16_t>& ports = outcome(a).ports;
    return std::binary_search(ports.begin(), ports.end(), port);
  };
  auto consumer_of_client = [&](const Attachment& a) {
    return client_ns != nullptr && outcome(a).consumer && a.route.ns == *client_ns;
  };
  struct Emit {
    std::vector<uint16_t> ports;
    bool portless = false;  // attached by a parentRef without port or sectionName
  };
  std::map<RouteKey, Emit> emit;
  for (const routes::ServicePort& p : frontend.ports) {
    // The group that applies on this port: the client's consumer routes if it
    // has any here (GEP-1686), else the producer routes.
    bool consumers = std::any_of(attached.begin(), attached.end(), [&](const Attachment& a) {
      return consumer_of_client(a) && covers(a, p.port);
    });
    std::vector<const Attachment*> group;
    for (const Attachment& a : attached) {
      bool member = consumers ? consumer_of_client(a) : !outcome(a).consumer;
      if (member && covers(a, p.port)) group.push_back(&a);
    }
    // GRPCRoutes beat HTTPRoutes on the same port (GEP-1294).
    bool grpc = std::any_of(group.begin(), group.end(), [](const Attachment* a) {
      return a->route.kind == routes::RouteKind::grpc_route;
    });
    for (const Attachment* a : group) {
      if (grpc && a->route.kind != routes::RouteKind::grpc_route) continue;
      Emit& e = emit[a->route];
      if (e.ports.empty() || e.ports.back() != p.port) e.ports.push_back(p.port);
      e.portless = e.portless || outcome(*a).all_ports;
    }
  }
  for (const auto& [key, e] : emit) {
    routes::Route base = routes_.at(key).route.table_route();
    if (e.portless && e.ports.size() == frontend.ports.size()) {
      out.push_back(std::move(base));
      continue;
    }
    std::vector<uint16_t> ports = e.ports;
    std::sort(ports.begin(), ports.end());
    for (uint16_t port : ports) {
      out.push_back(base);
      out.back().port = port;
    }
  }
  return out;
}

std::shared_ptr<const Snapshot> Resolver::snapshot() {
  if (!snapshot_) {
    for (const std::string& key : dirty_services_) {
      if (std::shared_ptr<const ServiceEntry> entry = build_entry(key)) {
        entries_[key] = std::move(entry);
      } else {
        entries_.erase(key);
      }
    }
    dirty_services_.clear();
    std::vector<std::shared_ptr<const ServiceEntry>> entries;
    entries.reserve(entries_.size());
    for (const auto& [key, entry] : entries_) entries.push_back(entry);
    snapshot_ = std::make_shared<const Snapshot>(std::move(entries));
  }
  return snapshot_;
}

std::shared_ptr<const Table> Resolver::compute(std::string_view ns) {
  if (auto it = tables_.find(ns); it != tables_.end()) return it->second;
  std::shared_ptr<const Snapshot> snap = snapshot();
  std::vector<std::pair<size_t, std::string>> overrides;
  std::string client(ns);
  if (auto it = consumer_services_.find(client); it != consumer_services_.end()) {
    for (const std::string& service : it->second) {
      size_t index = snap->find(service);
      if (index == snap->entries().size() || !snap->entries()[index]->listed) continue;
      const ServiceEntry& entry = *snap->entries()[index];
      routes::Service s = entry.frontend;
      s.routes = routes_for(service, s, &client);
      std::string text = service_json(s);
      if (text != entry.service_json) overrides.emplace_back(index, std::move(text));
    }
  }
  std::sort(overrides.begin(), overrides.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  auto table = std::make_shared<const Table>(client, std::move(snap), std::move(overrides));
  tables_.emplace(client, table);
  return table;
}

}  // namespace trellis::controller::resolve
