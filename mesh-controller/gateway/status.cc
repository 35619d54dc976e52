#include "mesh-controller/gateway/status.h"

#include <cstdio>
#include <ctime>

#include "common/json/json.h"

namespace trellis::controller::gateway {
namespace {

// The CRD's maxLength for a condition message.
constexpr size_t kMaxMessage = 32768;

// `s` cut to at most `max` bytes without splitting a UTF-8 sequence.
std::string_view truncate_utf8(std::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

void write_parent_ref(json::Writer& w, const ParentReference& ref) {
  w.key("parentRef").start_object();
  w.string_field("group", ref.group).string_field("kind", ref.kind);
  if (ref.ns) w.string_field("namespace", *ref.ns);
  w.string_field("name", ref.name);
  if (ref.section_name) w.string_field("sectionName", *ref.section_name);
  if (ref.port) w.integer_field("port", *ref.port);
  w.end_object();
}

std::string entry_json(const RouteParentStatus& s) {
  json::Writer w;
  w.start_object();
  write_parent_ref(w, s.parent_ref);
  w.string_field("controllerName", s.controller_name);
  w.key("conditions").start_array();
  for (const Condition& c : s.conditions) {
    w.start_object()
        .string_field("type", c.type)
        .string_field("status", c.status)
        .string_field("reason", c.reason)
        .string_field("message", c.message)
        .integer_field("observedGeneration", c.observed_generation)
        .string_field("lastTransitionTime", c.last_transition_time)
        .end_object();
  }
  w.end_array().end_object();
  return w.str();
}

// This controller's current entry for `ref`, if any.
const RouteParentStatus* current_entry(const Route& route, const ParentReference& ref,
                                       std::string_view controller_name) {
  for (const ObservedParentStatus& p : route.status_parents) {
    if (p.controller_name == controller_name && p.typed && p.typed->parent_ref == ref) {
      return &*p.typed;
    }
  }
  return nullptr;
}

}  // namespace

std::string format_time(std::chrono::system_clock::time_point time) {
  time_t t = std::chrono::system_clock::to_time_t(time);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buffer;
}

std::optional<std::string> status_patch(const Route& route,
                                        const std::vector<RouteParentStatus>& ours,
                                        std::string_view controller_name, std::string_view now) {
  // The new list: other controllers' entries verbatim, then ours.
  std::vector<std::string> entries;
  bool unchanged = true;
  size_t position = 0;  // in route.status_parents, while the lists agree
  for (const ObservedParentStatus& p : route.status_parents) {
    if (p.controller_name == controller_name) continue;
    if (entries.size() == kMaxStatusParents) break;
    unchanged = unchanged && position < route.status_parents.size() &&
                route.status_parents[position].json == p.json;
    ++position;
    entries.push_back(p.json);
  }
  for (const RouteParentStatus& desired : ours) {
    if (entries.size() == kMaxStatusParents) break;
    RouteParentStatus entry = desired;
    entry.controller_name = std::string(controller_name);
    const RouteParentStatus* current = current_entry(route, entry.parent_ref, controller_name);
    for (Condition& c : entry.conditions) {
      c.message = std::string(truncate_utf8(c.message, kMaxMessage));
      c.last_transition_time = std::string(now);
      if (current == nullptr) continue;
      for (const Condition& old : current->conditions) {
        if (old.type == c.type && old.status == c.status && !old.last_transition_time.empty()) {
          c.last_transition_time = old.last_transition_time;
        }
      }
    }
    unchanged = unchanged && position < route.status_parents.size() &&
                route.status_parents[position].typed &&
                *route.status_parents[position].typed == entry;
    ++position;
    entries.push_back(entry_json(entry));
  }
  if (unchanged && position == route.status_parents.size()) return std::nullopt;

  std::string body = "{";
  if (!route.metadata.resource_version.empty()) {
    body += R"("metadata":{"resourceVersion":)" + json::quote(route.metadata.resource_version) +
            "},";
  }
  body += R"("status":{"parents":[)";
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0) body += ',';
    body += entries[i];
  }
  body += "]}}";
  return body;
}

}  // namespace trellis::controller::gateway
