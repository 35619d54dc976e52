#include "mesh-controller/gateway/status.h"

#include <doctest/doctest.h>

#include <string>

using namespace trellis;
using namespace trellis::controller::gateway;

namespace {

constexpr char kNow[] = "2026-03-04T05:06:07Z";

Route route_with_status(std::string_view parents) {
  std::string text = R"({"metadata":{"name":"r","namespace":"shop","generation":5,)"
                     R"("resourceVersion":"42","creationTimestamp":"2026-01-02T03:04:05Z"},)"
                     R"("spec":{"parentRefs":[{"group":"","kind":"Service","name":"echo"}]},)"
                     R"("status":{"parents":)" +
                     std::string(parents) + "}}";
  auto doc = json::Document::parse(text, json::Limits{});
  REQUIRE(doc.ok());
  auto route = decode_http_route(doc->root());
  REQUIRE(route.ok());
  return *route;
}

ParentReference echo_ref() {
  ParentReference ref;
  ref.group = "";
  ref.kind = "Service";
  ref.name = "echo";
  return ref;
}

Condition make_condition(std::string type, std::string status, std::string reason,
                    std::string message) {
  Condition c;
  c.type = std::move(type);
  c.status = std::move(status);
  c.reason = std::move(reason);
  c.message = std::move(message);
  c.observed_generation = 5;
  return c;
}

std::vector<RouteParentStatus> accepted() {
  RouteParentStatus s;
  s.parent_ref = echo_ref();
  s.conditions = {
      make_condition("Accepted", "True", "Accepted", "Accepted"),
      make_condition("ResolvedRefs", "True", "ResolvedRefs", "All references resolved")};
  return {s};
}

constexpr char kOurs[] =
    R"({"parentRef":{"group":"","kind":"Service","name":"echo"},)"
    R"("controllerName":"trellis.dev/mesh-controller","conditions":[)"
    R"({"type":"Accepted","status":"True","reason":"Accepted","message":"Accepted",)"
    R"("observedGeneration":5,"lastTransitionTime":"2026-01-01T00:00:00Z"},)"
    R"({"type":"ResolvedRefs","status":"True","reason":"ResolvedRefs",)"
    R"("message":"All references resolved","observedGeneration":5,)"
    R"("lastTransitionTime":"2026-01-01T00:00:00Z"}]})";

constexpr char kIstio[] =
    R"({"parentRef":{"group":"","kind":"Service","name":"echo"},)"
    R"("controllerName":"istio.io/gateway-controller","conditions":[{"type":"Accepted",)"
    R"("status":"True","reason":"Accepted","message":"",)"
    R"("lastTransitionTime":"2025-01-01T00:00:00Z"}]})";

}  // namespace

TEST_CASE("format_time writes metav1.Time") {
  CHECK(format_time(std::chrono::system_clock::from_time_t(1767323045)) == "2026-01-02T03:04:05Z");
  CHECK(format_time(std::chrono::system_clock::from_time_t(0)) == "1970-01-01T00:00:00Z");
}

TEST_CASE("a first status: ours, with the time of now and the object's resourceVersion") {
  Route r = route_with_status("[]");
  auto patch = status_patch(r, accepted(), kControllerName, kNow);
  REQUIRE(patch.has_value());
  CHECK(*patch ==
        R"({"metadata":{"resourceVersion":"42"},"status":{"parents":[)"
        R"({"parentRef":{"group":"","kind":"Service","name":"echo"},)"
        R"("controllerName":"trellis.dev/mesh-controller","conditions":[)"
        R"({"type":"Accepted","status":"True","reason":"Accepted","message":"Accepted",)"
        R"("observedGeneration":5,"lastTransitionTime":"2026-03-04T05:06:07Z"},)"
        R"({"type":"ResolvedRefs","status":"True","reason":"ResolvedRefs",)"
        R"("message":"All references resolved","observedGeneration":5,)"
        R"("lastTransitionTime":"2026-03-04T05:06:07Z"}]}]}})");
}

TEST_CASE("other controllers' entries are kept verbatim, first") {
  Route r = route_with_status("[" + std::string(kOurs) + "," + kIstio + "]");
  RouteParentStatus changed = accepted()[0];
  changed.conditions[1] = make_condition("ResolvedRefs", "False", "BackendNotFound", "gone");
  auto patch = status_patch(r, {changed}, kControllerName, kNow);
  REQUIRE(patch.has_value());
  std::string expected_ours =
      R"({"parentRef":{"group":"","kind":"Service","name":"echo"},)"
      R"("controllerName":"trellis.dev/mesh-controller","conditions":[)"
      R"({"type":"Accepted","status":"True","reason":"Accepted","message":"Accepted",)"
      R"("observedGeneration":5,"lastTransitionTime":"2026-01-01T00:00:00Z"},)"
      R"({"type":"ResolvedRefs","status":"False","reason":"BackendNotFound",)"
      R"("message":"gone","observedGeneration":5,"lastTransitionTime":"2026-03-04T05:06:07Z"}]})";
  CHECK(*patch == R"({"metadata":{"resourceVersion":"42"},"status":{"parents":[)" +
                      std::string(kIstio) + "," + expected_ours + "]}}");
}

TEST_CASE("lastTransitionTime stays while a condition's status stays") {
  Route r = route_with_status("[" + std::string(kIstio) + "," + kOurs + "]");
  // Same statuses, new reason and message: the time is kept.
  RouteParentStatus s = accepted()[0];
  s.conditions[0].message = "Accepted; GRPCRoute shop/g takes precedence on port 7070";
  auto patch = status_patch(r, {s}, kControllerName, kNow);
  REQUIRE(patch.has_value());
  CHECK(patch->find(kNow) == std::string::npos);
  CHECK(patch->find("Accepted; GRPCRoute shop/g") != std::string::npos);
}

TEST_CASE("nothing to write when the object already says it") {
  Route r = route_with_status("[" + std::string(kIstio) + "," + kOurs + "]");
  CHECK_FALSE(status_patch(r, accepted(), kControllerName, kNow).has_value());

  // Ours first, others after: rewritten once into the canonical order.
  r = route_with_status("[" + std::string(kOurs) + "," + kIstio + "]");
  CHECK(status_patch(r, accepted(), kControllerName, kNow).has_value());

  // A new generation is a change (observedGeneration), times kept.
  r = route_with_status("[" + std::string(kIstio) + "," + kOurs + "]");
  std::vector<RouteParentStatus> next = accepted();
  for (Condition& c : next[0].conditions) c.observed_generation = 6;
  auto patch = status_patch(r, next, kControllerName, kNow);
  REQUIRE(patch.has_value());
  CHECK(patch->find(R"("observedGeneration":6,"lastTransitionTime":"2026-01-01T00:00:00Z")") !=
        std::string::npos);
}

TEST_CASE("our entries for parentRefs no longer in the spec are dropped") {
  Route r = route_with_status("[" + std::string(kIstio) + "," + kOurs + "]");
  auto patch = status_patch(r, {}, kControllerName, kNow);
  REQUIRE(patch.has_value());
  CHECK(*patch == R"({"metadata":{"resourceVersion":"42"},"status":{"parents":[)" +
                      std::string(kIstio) + "]}}");
  // And nothing to do when there is nothing of ours.
  r = route_with_status("[" + std::string(kIstio) + "]");
  CHECK_FALSE(status_patch(r, {}, kControllerName, kNow).has_value());
}

TEST_CASE("a changed parentRef gets a fresh entry") {
  Route r = route_with_status("[" + std::string(kOurs) + "]");
  std::vector<RouteParentStatus> s = accepted();
  s[0].parent_ref.port = 80;
  auto patch = status_patch(r, s, kControllerName, kNow);
  REQUIRE(patch.has_value());
  CHECK(patch->find(R"("name":"echo","port":80})") != std::string::npos);
  CHECK(patch->find("2026-01-01T00:00:00Z") == std::string::npos);
}

TEST_CASE("at most 32 entries; messages cut to the CRD's 32768 bytes on a UTF-8 boundary") {
  std::string parents = "[";
  for (int i = 0; i < 31; ++i) {
    if (i > 0) parents += ",";
    parents += R"({"parentRef":{"name":"gw)" + std::to_string(i) +
               R"("},"controllerName":"example.com/gateway","conditions":[]})";
  }
  parents += "]";
  Route r = route_with_status(parents);
  std::vector<RouteParentStatus> ours = accepted();
  ours.push_back(ours[0]);
  ours[1].parent_ref.port = 80;
  ours[0].conditions[0].message = std::string(32767, 'a') + "\xC3\xA9";  // é straddles the limit
  auto patch = status_patch(r, ours, kControllerName, kNow);
  REQUIRE(patch.has_value());
  size_t entries = 0;
  for (size_t at = patch->find("controllerName"); at != std::string::npos;
       at = patch->find("controllerName", at + 1)) {
    ++entries;
  }
  CHECK(entries == 32);
  CHECK(patch->find(R"("port":80)") == std::string::npos);
  CHECK(patch->find(std::string(32767, 'a') + R"(")") != std::string::npos);
}

TEST_CASE("no resourceVersion, no precondition") {
  auto doc = json::Document::parse(R"({"metadata":{"name":"r","namespace":"shop"},"spec":{}})",
                                   json::Limits{});
  REQUIRE(doc.ok());
  auto r = decode_http_route(doc->root());
  REQUIRE(r.ok());
  auto patch = status_patch(*r, accepted(), kControllerName, kNow);
  REQUIRE(patch.has_value());
  CHECK(patch->rfind(R"({"status":{"parents":[)", 0) == 0);
}
