#include "common/kube/objects.h"

#include <cstdio>
#include <ctime>
#include <limits>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace trellis::kube {

namespace {

constexpr int64_t kInt32Max = 2147483647;

// Optional fields: each leaves `out` at its default when the field is absent.
Status read_string(const json::Object& o, std::string_view key, std::string& out) {
  auto v = o.optional_string(key);
  if (!v) return std::move(v).error();
  if (*v) out = std::string(**v);
  return ok_status();
}

Status read_optional_string(const json::Object& o, std::string_view key,
                            std::optional<std::string>& out) {
  auto v = o.optional_string(key);
  if (!v) return std::move(v).error();
  if (*v) out = std::string(**v);
  return ok_status();
}

Status read_int32(const json::Object& o, std::string_view key, int32_t& out, int64_t min = 0,
                  int64_t max = kInt32Max) {
  auto v = o.optional_integer(key, min, max);
  if (!v) return std::move(v).error();
  if (*v) out = static_cast<int32_t>(**v);
  return ok_status();
}

Status read_bool(const json::Object& o, std::string_view key, bool& out) {
  auto v = o.optional_bool(key);
  if (!v) return std::move(v).error();
  if (*v) out = **v;
  return ok_status();
}

Status read_optional_bool(const json::Object& o, std::string_view key, std::optional<bool>& out) {
  auto v = o.optional_bool(key);
  if (!v) return std::move(v).error();
  out = *v;
  return ok_status();
}

Status read_string_map(const json::Object& o, std::string_view key, StringMap& out) {
  auto m = o.optional_object(key);
  if (!m) return std::move(m).error();
  if (!*m) return ok_status();
  Status status;
  (*m)->for_each([&](std::string_view k, const json::Value& v) {
    if (!status.ok()) return;
    auto s = v.string();
    if (!s) {
      status = std::move(s).error();
      return;
    }
    out.emplace(std::string(k), std::string(*s));
  });
  return status;
}

Status read_string_list(const json::Object& o, std::string_view key,
                        std::vector<std::string>& out) {
  auto a = o.optional_array(key);
  if (!a) return std::move(a).error();
  if (!*a) return ok_status();
  for (size_t i = 0; i < (*a)->size(); ++i) {
    auto s = (**a)[i].string();
    if (!s) return std::move(s).error();
    out.emplace_back(*s);
  }
  return ok_status();
}

// Calls decode(Object) for every element of the optional array `key`.
template <typename F>
Status read_objects(const json::Object& o, std::string_view key, F&& decode) {
  auto a = o.optional_array(key);
  if (!a) return std::move(a).error();
  if (!*a) return ok_status();
  for (size_t i = 0; i < (*a)->size(); ++i) {
    auto item = (**a)[i].object();
    if (!item) return std::move(item).error();
    if (auto s = decode(*item); !s.ok()) return s;
  }
  return ok_status();
}

Result<json::Object> root_object(const json::Value& object) { return object.object(); }

Result<std::optional<json::Object>> optional_child(const json::Object& o, std::string_view key) {
  return o.optional_object(key);
}

Status decode_owner_reference(const json::Object& o, std::vector<OwnerReference>& out) {
  OwnerReference ref;
  if (auto s = read_string(o, "apiVersion", ref.api_version); !s.ok()) return s;
  if (auto s = read_string(o, "kind", ref.kind); !s.ok()) return s;
  if (auto s = read_string(o, "name", ref.name); !s.ok()) return s;
  if (auto s = read_string(o, "uid", ref.uid); !s.ok()) return s;
  if (auto s = read_bool(o, "controller", ref.controller); !s.ok()) return s;
  out.push_back(std::move(ref));
  return ok_status();
}

Status decode_meta_into(const json::Object& object, ObjectMeta& meta) {
  auto m = object.required_object("metadata");
  if (!m) return std::move(m).error();
  auto name = m->required_string("name");
  if (!name) return std::move(name).error();
  meta.name = std::string(*name);
  if (auto s = read_string(*m, "namespace", meta.namespace_); !s.ok()) return s;
  if (auto s = read_string(*m, "uid", meta.uid); !s.ok()) return s;
  if (auto s = read_string(*m, "resourceVersion", meta.resource_version); !s.ok()) return s;
  auto generation = m->optional_integer("generation", 0, std::numeric_limits<int64_t>::max());
  if (!generation) return std::move(generation).error();
  meta.generation = generation->value_or(0);
  if (auto s = read_string(*m, "creationTimestamp", meta.creation_timestamp); !s.ok()) return s;
  if (auto s = read_optional_string(*m, "deletionTimestamp", meta.deletion_timestamp); !s.ok()) {
    return s;
  }
  if (auto s = read_string_map(*m, "labels", meta.labels); !s.ok()) return s;
  if (auto s = read_string_map(*m, "annotations", meta.annotations); !s.ok()) return s;
  return read_objects(*m, "ownerReferences", [&](const json::Object& o) {
    return decode_owner_reference(o, meta.owner_references);
  });
}

Status decode_container(const json::Object& o, std::vector<Container>& out) {
  Container c;
  auto name = o.required_string("name");
  if (!name) return std::move(name).error();
  c.name = std::string(*name);
  if (auto s = read_string(o, "image", c.image); !s.ok()) return s;
  auto s = read_objects(o, "ports", [&](const json::Object& p) {
    ContainerPort port;
    auto number = p.required_integer("containerPort", 1, 65535);
    if (!number) return Status(std::move(number).error());
    port.container_port = static_cast<int32_t>(*number);
    if (auto st = read_string(p, "name", port.name); !st.ok()) return st;
    if (auto st = read_string(p, "protocol", port.protocol); !st.ok()) return st;
    c.ports.push_back(std::move(port));
    return ok_status();
  });
  if (!s.ok()) return s;
  out.push_back(std::move(c));
  return ok_status();
}

}  // namespace

std::string object_key(std::string_view ns, std::string_view name) {
  if (ns.empty()) return std::string(name);
  std::string key;
  key.reserve(ns.size() + 1 + name.size());
  key += ns;
  key += '/';
  key += name;
  return key;
}

std::string ObjectMeta::key() const { return object_key(namespace_, name); }

Result<ObjectMeta> decode_object_meta(const json::Value& object) {
  auto o = root_object(object);
  if (!o) return std::move(o).error();
  ObjectMeta meta;
  if (auto s = decode_meta_into(*o, meta); !s.ok()) return std::move(s).error();
  return meta;
}

Result<RawObject> decode_raw_object(const json::Value& object) {
  auto meta = decode_object_meta(object);
  if (!meta) return std::move(meta).error();
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  object.raw().Accept(writer);
  return RawObject{std::move(*meta), std::string(buffer.GetString(), buffer.GetSize())};
}

Result<Namespace> decode_namespace(const json::Value& object) {
  auto o = root_object(object);
  if (!o) return std::move(o).error();
  Namespace ns;
  if (auto s = decode_meta_into(*o, ns.metadata); !s.ok()) return std::move(s).error();
  auto status = optional_child(*o, "status");
  if (!status) return std::move(status).error();
  if (*status) {
    if (auto s = read_string(**status, "phase", ns.phase); !s.ok()) return std::move(s).error();
  }
  return ns;
}

namespace {

Status decode_service_port(const json::Object& o, std::vector<ServicePort>& out) {
  ServicePort port;
  auto number = o.required_integer("port", 1, 65535);
  if (!number) return std::move(number).error();
  port.port = static_cast<int32_t>(*number);
  if (auto s = read_string(o, "name", port.name); !s.ok()) return s;
  if (auto s = read_string(o, "protocol", port.protocol); !s.ok()) return s;
  if (auto s = read_optional_string(o, "appProtocol", port.app_protocol); !s.ok()) return s;
  port.target_port.int_value = port.port;
  if (auto target = o.find("targetPort")) {
    if (target->is_string()) {
      auto name = target->string();
      if (name->empty()) return target->error("expected a port name or number, got ''");
      port.target_port = IntOrString{false, 0, std::string(*name)};
    } else {
      auto n = target->integer(1, 65535);
      if (!n) return std::move(n).error();
      port.target_port.int_value = static_cast<int32_t>(*n);
    }
  }
  out.push_back(std::move(port));
  return ok_status();
}

}  // namespace

Result<Service> decode_service(const json::Value& object) {
  auto o = root_object(object);
  if (!o) return std::move(o).error();
  Service svc;
  if (auto s = decode_meta_into(*o, svc.metadata); !s.ok()) return std::move(s).error();
  auto spec = optional_child(*o, "spec");
  if (!spec) return std::move(spec).error();
  if (!*spec) return svc;
  const json::Object& sp = **spec;
  if (auto s = read_string(sp, "type", svc.type); !s.ok()) return std::move(s).error();
  if (auto s = read_string(sp, "clusterIP", svc.cluster_ip); !s.ok()) return std::move(s).error();
  if (auto s = read_string_list(sp, "clusterIPs", svc.cluster_ips); !s.ok()) {
    return std::move(s).error();
  }
  if (svc.cluster_ips.empty() && !svc.cluster_ip.empty()) svc.cluster_ips.push_back(svc.cluster_ip);
  if (svc.cluster_ip.empty() && !svc.cluster_ips.empty()) svc.cluster_ip = svc.cluster_ips[0];
  auto s = read_objects(sp, "ports",
                        [&](const json::Object& p) { return decode_service_port(p, svc.ports); });
  if (!s.ok()) return std::move(s).error();
  if (auto st = read_string_map(sp, "selector", svc.selector); !st.ok()) {
    return std::move(st).error();
  }
  return svc;
}

std::string EndpointSlice::service_name() const {
  auto it = metadata.labels.find(kServiceNameLabel);
  return it == metadata.labels.end() ? std::string() : it->second;
}

namespace {

Status decode_endpoint(const json::Object& o, std::vector<Endpoint>& out) {
  Endpoint ep;
  if (auto s = read_string_list(o, "addresses", ep.addresses); !s.ok()) return s;
  auto conditions = o.optional_object("conditions");
  if (!conditions) return std::move(conditions).error();
  if (*conditions) {
    const json::Object& c = **conditions;
    if (auto s = read_optional_bool(c, "ready", ep.conditions.ready); !s.ok()) return s;
    if (auto s = read_optional_bool(c, "serving", ep.conditions.serving); !s.ok()) return s;
    if (auto s = read_optional_bool(c, "terminating", ep.conditions.terminating); !s.ok()) return s;
  }
  auto target = o.optional_object("targetRef");
  if (!target) return std::move(target).error();
  if (*target) {
    ObjectReference ref;
    if (auto s = read_string(**target, "kind", ref.kind); !s.ok()) return s;
    if (auto s = read_string(**target, "namespace", ref.namespace_); !s.ok()) return s;
    if (auto s = read_string(**target, "name", ref.name); !s.ok()) return s;
    if (auto s = read_string(**target, "uid", ref.uid); !s.ok()) return s;
    ep.target_ref = std::move(ref);
  }
  if (auto s = read_optional_string(o, "nodeName", ep.node_name); !s.ok()) return s;
  out.push_back(std::move(ep));
  return ok_status();
}

Status decode_endpoint_port(const json::Object& o, std::vector<EndpointPort>& out) {
  EndpointPort port;
  if (auto s = read_string(o, "name", port.name); !s.ok()) return s;
  auto number = o.optional_integer("port", 1, 65535);
  if (!number) return std::move(number).error();
  if (*number) port.port = static_cast<int32_t>(**number);
  if (auto s = read_string(o, "protocol", port.protocol); !s.ok()) return s;
  if (auto s = read_optional_string(o, "appProtocol", port.app_protocol); !s.ok()) return s;
  out.push_back(std::move(port));
  return ok_status();
}

}  // namespace

Result<EndpointSlice> decode_endpoint_slice(const json::Value& object) {
  auto o = root_object(object);
  if (!o) return std::move(o).error();
  EndpointSlice slice;
  if (auto s = decode_meta_into(*o, slice.metadata); !s.ok()) return std::move(s).error();
  auto type = o->required_string("addressType");
  if (!type) return std::move(type).error();
  slice.address_type = std::string(*type);
  auto s = read_objects(*o, "endpoints", [&](const json::Object& e) {
    return decode_endpoint(e, slice.endpoints);
  });
  if (!s.ok()) return std::move(s).error();
  s = read_objects(*o, "ports",
                   [&](const json::Object& p) { return decode_endpoint_port(p, slice.ports); });
  if (!s.ok()) return std::move(s).error();
  return slice;
}

bool Pod::is_ready() const {
  for (const auto& c : conditions) {
    if (c.type == "Ready") return c.status == "True";
  }
  return false;
}

Result<Pod> decode_pod(const json::Value& object) {
  auto o = root_object(object);
  if (!o) return std::move(o).error();
  Pod pod;
  if (auto s = decode_meta_into(*o, pod.metadata); !s.ok()) return std::move(s).error();
  auto spec = optional_child(*o, "spec");
  if (!spec) return std::move(spec).error();
  pod.service_account_name = "default";
  if (*spec) {
    const json::Object& sp = **spec;
    if (auto s = read_string(sp, "serviceAccountName", pod.service_account_name); !s.ok()) {
      return std::move(s).error();
    }
    if (auto s = read_string(sp, "nodeName", pod.node_name); !s.ok()) return std::move(s).error();
    if (auto s = read_bool(sp, "hostNetwork", pod.host_network); !s.ok()) {
      return std::move(s).error();
    }
    auto s = read_objects(sp, "initContainers", [&](const json::Object& c) {
      return decode_container(c, pod.init_containers);
    });
    if (!s.ok()) return std::move(s).error();
    s = read_objects(sp, "containers",
                     [&](const json::Object& c) { return decode_container(c, pod.containers); });
    if (!s.ok()) return std::move(s).error();
  }
  auto status = optional_child(*o, "status");
  if (!status) return std::move(status).error();
  if (*status) {
    const json::Object& st = **status;
    if (auto s = read_string(st, "phase", pod.phase); !s.ok()) return std::move(s).error();
    if (auto s = read_string(st, "podIP", pod.pod_ip); !s.ok()) return std::move(s).error();
    auto s = read_objects(st, "podIPs", [&](const json::Object& ip) {
      auto text = ip.required_string("ip");
      if (!text) return Status(std::move(text).error());
      pod.pod_ips.emplace_back(*text);
      return ok_status();
    });
    if (!s.ok()) return std::move(s).error();
    s = read_objects(st, "conditions", [&](const json::Object& c) {
      PodCondition condition;
      auto type = c.required_string("type");
      if (!type) return Status(std::move(type).error());
      condition.type = std::string(*type);
      if (auto r = read_string(c, "status", condition.status); !r.ok()) return r;
      pod.conditions.push_back(std::move(condition));
      return ok_status();
    });
    if (!s.ok()) return std::move(s).error();
    if (pod.pod_ips.empty() && !pod.pod_ip.empty()) pod.pod_ips.push_back(pod.pod_ip);
  }
  return pod;
}

Result<Lease> decode_lease(const json::Value& object) {
  auto o = root_object(object);
  if (!o) return std::move(o).error();
  Lease lease;
  if (auto s = decode_meta_into(*o, lease.metadata); !s.ok()) return std::move(s).error();
  auto spec = optional_child(*o, "spec");
  if (!spec) return std::move(spec).error();
  if (*spec) {
    const json::Object& sp = **spec;
    LeaseSpec& out = lease.spec;
    if (auto s = read_string(sp, "holderIdentity", out.holder_identity); !s.ok()) {
      return std::move(s).error();
    }
    if (auto s = read_int32(sp, "leaseDurationSeconds", out.lease_duration_seconds); !s.ok()) {
      return std::move(s).error();
    }
    if (auto s = read_string(sp, "acquireTime", out.acquire_time); !s.ok()) {
      return std::move(s).error();
    }
    if (auto s = read_string(sp, "renewTime", out.renew_time); !s.ok()) return std::move(s).error();
    if (auto s = read_int32(sp, "leaseTransitions", out.lease_transitions); !s.ok()) {
      return std::move(s).error();
    }
  }
  return lease;
}

std::string encode_lease(const Lease& lease) {
  json::Writer w;
  w.start_object();
  w.string_field("apiVersion", "coordination.k8s.io/v1").string_field("kind", "Lease");
  w.key("metadata").start_object().string_field("name", lease.metadata.name);
  if (!lease.metadata.namespace_.empty()) w.string_field("namespace", lease.metadata.namespace_);
  if (!lease.metadata.resource_version.empty()) {
    w.string_field("resourceVersion", lease.metadata.resource_version);
  }
  w.end_object();
  const LeaseSpec& spec = lease.spec;
  w.key("spec").start_object();
  w.string_field("holderIdentity", spec.holder_identity);
  w.integer_field("leaseDurationSeconds", spec.lease_duration_seconds);
  if (!spec.acquire_time.empty()) w.string_field("acquireTime", spec.acquire_time);
  if (!spec.renew_time.empty()) w.string_field("renewTime", spec.renew_time);
  w.integer_field("leaseTransitions", spec.lease_transitions);
  w.end_object();
  w.end_object();
  return w.str();
}

namespace {

bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

}  // namespace

Result<std::chrono::system_clock::time_point> parse_time(std::string_view text) {
  auto invalid = [&] {
    return make_error("invalid RFC 3339 timestamp '" + std::string(text) + "'");
  };
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!digits(text, 0, 4, year) || text.size() < 20 || text[4] != '-' ||
      !digits(text, 5, 2, month) || text[7] != '-' || !digits(text, 8, 2, day) ||
      (text[10] != 'T' && text[10] != 't') || !digits(text, 11, 2, hour) || text[13] != ':' ||
      !digits(text, 14, 2, minute) || text[16] != ':' || !digits(text, 17, 2, second)) {
    return invalid();
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return invalid();
  }
  size_t pos = 19;
  int64_t micros = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t start = pos;
    int64_t scale = 100000;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      micros += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return invalid();
  }
  int offset_seconds = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int oh = 0, om = 0;
    if (!digits(text, pos + 1, 2, oh) || pos + 3 >= text.size() || text[pos + 3] != ':' ||
        !digits(text, pos + 4, 2, om) || oh > 23 || om > 59) {
      return invalid();
    }
    offset_seconds = (oh * 3600 + om * 60) * (text[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return invalid();
  }
  if (pos != text.size()) return invalid();
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  time_t t = timegm(&tm);
  // timegm normalises out-of-range days (Feb 31 → Mar 3): refuse those.
  if (tm.tm_mday != day) return invalid();
  return std::chrono::system_clock::from_time_t(t - offset_seconds) +
         std::chrono::microseconds(micros);
}

std::string format_micro_time(std::chrono::system_clock::time_point time) {
  auto since_epoch =
      std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count();
  int64_t seconds = since_epoch / 1000000;
  int64_t micros = since_epoch % 1000000;
  if (micros < 0) {
    micros += 1000000;
    seconds -= 1;
  }
  time_t t = static_cast<time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[80];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(micros));
  return buffer;
}

}  // namespace trellis::kube
