#include "mesh-controller/gateway/route.h"

#include <limits>
#include <tuple>
#include <utility>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace trellis::controller::gateway {
namespace {

std::string compact(const json::Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  v.raw().Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

Result<std::optional<std::string>> optional_text(const json::Object& o, std::string_view key) {
  ASSIGN_OR_RETURN(std::optional<std::string_view> v, o.optional_string(key));
  if (!v) return std::optional<std::string>();
  return std::optional<std::string>(std::string(*v));
}

Result<ParentReference> decode_parent_ref(const json::Object& o) {
  ParentReference ref;
  ASSIGN_OR_RETURN(std::optional<std::string> group, optional_text(o, "group"));
  if (group) ref.group = std::move(*group);
  ASSIGN_OR_RETURN(std::optional<std::string> kind, optional_text(o, "kind"));
  if (kind) ref.kind = std::move(*kind);
  ASSIGN_OR_RETURN(std::string_view name, o.required_string("name"));
  ref.name = std::string(name);
  ASSIGN_OR_RETURN(ref.ns, optional_text(o, "namespace"));
  ASSIGN_OR_RETURN(ref.section_name, optional_text(o, "sectionName"));
  ASSIGN_OR_RETURN(std::optional<int64_t> port, o.optional_integer("port", 1, 65535));
  if (port) ref.port = static_cast<uint16_t>(*port);
  return ref;
}

// The route-table parser reports paths from the root of a table; the wrapper
// below puts the route at services[0].routes[0]. Translate back to the paths of
// the HTTPRoute object.
std::string object_path(std::string message) {
  static const std::pair<std::string_view, std::string_view> kPrefixes[] = {
      {"services[0].routes[0].rules", "spec.rules"},
      {"services[0].routes[0].creationTimestamp", "metadata.creationTimestamp"},
      {"services[0].routes[0].namespace", "metadata.namespace"},
      {"services[0].routes[0].name", "metadata.name"},
      {"services[0].routes[0]", "spec"},
  };
  for (const auto& [from, to] : kPrefixes) {
    if (message.compare(0, from.size(), from) == 0) {
      return std::string(to) + message.substr(from.size());
    }
  }
  return message;
}

// Decodes spec.rules with routes::parse: a one-route table whose route carries
// the object's rules verbatim. The parser fills in the CRD defaults and applies
// the CRD validation, exactly as the sidecar will.
Status decode_rules(const std::optional<json::Value>& rules, Route& route) {
  std::string table = R"({"version":"0","namespace":"x","services":[{"namespace":"x",)"
                      R"("name":"x","clusterIPs":[],"ports":[],"routes":[{"kind":)" +
                      json::quote(routes::name(route.kind)) + R"(,"namespace":)" +
                      json::quote(route.metadata.namespace_) + R"(,"name":)" +
                      json::quote(route.metadata.name) + R"(,"creationTimestamp":)" +
                      json::quote(route.metadata.creation_timestamp);
  if (rules) table += R"(,"rules":)" + compact(*rules);
  table += "}]}],\"endpoints\":[]}";
  auto parsed = routes::parse(table);
  if (!parsed) return make_error(object_path(std::move(parsed).error().message));
  const routes::Route& r = (*parsed)->services.at(0).routes.at(0);
  route.http_rules = r.http_rules;
  route.grpc_rules = r.grpc_rules;
  route.creation_time_ns = r.creation_time_ns;
  return ok_status();
}

Result<RouteParentStatus> decode_parent_status(const json::Object& o) {
  RouteParentStatus s;
  ASSIGN_OR_RETURN(json::Object ref, o.required_object("parentRef"));
  ASSIGN_OR_RETURN(s.parent_ref, decode_parent_ref(ref));
  ASSIGN_OR_RETURN(std::string_view controller, o.required_string("controllerName"));
  s.controller_name = std::string(controller);
  ASSIGN_OR_RETURN(std::optional<json::Array> conditions, o.optional_array("conditions"));
  if (!conditions) return s;
  for (size_t i = 0; i < conditions->size(); ++i) {
    ASSIGN_OR_RETURN(json::Object c, (*conditions)[i].object());
    Condition condition;
    ASSIGN_OR_RETURN(std::string_view type, c.required_string("type"));
    condition.type = std::string(type);
    ASSIGN_OR_RETURN(std::string_view status, c.required_string("status"));
    condition.status = std::string(status);
    ASSIGN_OR_RETURN(std::optional<std::string> reason, optional_text(c, "reason"));
    condition.reason = reason.value_or("");
    ASSIGN_OR_RETURN(std::optional<std::string> message, optional_text(c, "message"));
    condition.message = message.value_or("");
    ASSIGN_OR_RETURN(
        std::optional<int64_t> generation,
        c.optional_integer("observedGeneration", 0, std::numeric_limits<int64_t>::max()));
    condition.observed_generation = generation.value_or(0);
    ASSIGN_OR_RETURN(std::optional<std::string> time, optional_text(c, "lastTransitionTime"));
    condition.last_transition_time = time.value_or("");
    s.conditions.push_back(std::move(condition));
  }
  return s;
}

// Whatever decodes of status.parents; a malformed entry is kept verbatim.
std::vector<ObservedParentStatus> decode_status_parents(const json::Object& root) {
  std::vector<ObservedParentStatus> out;
  auto status = root.optional_object("status");
  if (!status.ok() || !*status) return out;
  auto parents = (*status)->optional_array("parents");
  if (!parents.ok() || !*parents) return out;
  const json::Array& list = **parents;
  for (size_t i = 0; i < list.size(); ++i) {
    ObservedParentStatus entry;
    entry.json = compact(list[i]);
    if (auto o = list[i].object(); o.ok()) {
      if (auto controller = o->optional_string("controllerName"); controller.ok() && *controller) {
        entry.controller_name = std::string(**controller);
      }
      if (auto typed = decode_parent_status(*o); typed.ok()) entry.typed = std::move(*typed);
    }
    out.push_back(std::move(entry));
  }
  return out;
}

// The spec, or the first error in it. Fills `route` as far as it decodes.
Status decode_spec(const json::Object& root, Route& route) {
  ASSIGN_OR_RETURN(json::Object spec, root.required_object("spec"));
  ASSIGN_OR_RETURN(std::optional<json::Array> parents, spec.optional_array("parentRefs"));
  if (parents) {
    for (size_t i = 0; i < parents->size(); ++i) {
      ASSIGN_OR_RETURN(json::Object p, (*parents)[i].object());
      ASSIGN_OR_RETURN(ParentReference ref, decode_parent_ref(p));
      route.parent_refs.push_back(std::move(ref));
    }
  }
  return decode_rules(spec.find("rules"), route);
}

}  // namespace

bool ParentReference::is_service() const {
  return kind == "Service" && (group.empty() || group == "core");
}

bool operator==(const ParentReference& a, const ParentReference& b) {
  return std::tie(a.group, a.kind, a.ns, a.name, a.section_name, a.port) ==
         std::tie(b.group, b.kind, b.ns, b.name, b.section_name, b.port);
}

bool operator==(const Condition& a, const Condition& b) {
  return std::tie(a.type, a.status, a.reason, a.message, a.observed_generation,
                  a.last_transition_time) == std::tie(b.type, b.status, b.reason, b.message,
                                                      b.observed_generation,
                                                      b.last_transition_time);
}

bool operator==(const RouteParentStatus& a, const RouteParentStatus& b) {
  return std::tie(a.parent_ref, a.controller_name, a.conditions) ==
         std::tie(b.parent_ref, b.controller_name, b.conditions);
}

routes::Route Route::table_route() const {
  routes::Route r;
  r.kind = kind;
  r.ns = metadata.namespace_;
  r.name = metadata.name;
  r.creation_timestamp = metadata.creation_timestamp;
  r.creation_time_ns = creation_time_ns;
  r.http_rules = http_rules;
  r.grpc_rules = grpc_rules;
  return r;
}

Result<Route> decode_route(routes::RouteKind kind, const json::Value& object) {
  ASSIGN_OR_RETURN(json::Object root, object.object());
  Route route;
  route.kind = kind;
  ASSIGN_OR_RETURN(route.metadata, kube::decode_object_meta(object));
  if (Status spec = decode_spec(root, route); !spec.ok()) {
    route.spec_error = std::move(spec).error().message;
    route.http_rules.clear();
    route.grpc_rules.clear();
  }
  route.status_parents = decode_status_parents(root);
  return route;
}

Result<Route> decode_http_route(const json::Value& object) {
  return decode_route(routes::RouteKind::http_route, object);
}

Result<Route> decode_grpc_route(const json::Value& object) {
  return decode_route(routes::RouteKind::grpc_route, object);
}

}  // namespace trellis::controller::gateway
