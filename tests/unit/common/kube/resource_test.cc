#include <doctest/doctest.h>

#include "common/kube/errors.h"
#include "common/kube/resource.h"

namespace kube = trellis::kube;
using kube::resources::kConfigMaps;
using kube::resources::kHttpRoutes;
using kube::resources::kNamespaces;

TEST_CASE("collection and object paths for core, grouped and cluster-scoped resources") {
  CHECK(kube::collection_path(kConfigMaps, "shop").value() ==
        "/api/v1/namespaces/shop/configmaps");
  CHECK(kube::collection_path(kConfigMaps, "").value() == "/api/v1/configmaps");
  CHECK(kube::collection_path(kHttpRoutes, "shop").value() ==
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes");
  CHECK(kube::collection_path(kNamespaces, "").value() == "/api/v1/namespaces");
  CHECK(kube::object_path(kConfigMaps, "shop", "settings").value() ==
        "/api/v1/namespaces/shop/configmaps/settings");
  CHECK(kube::object_path(kHttpRoutes, "shop", "split", "status").value() ==
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/split/status");
  CHECK(kube::object_path(kNamespaces, "", "shop").value() == "/api/v1/namespaces/shop");
  CHECK(kube::object_path(kube::resources::kLeases, "kube-system", "ctl").value() ==
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/ctl");
}

TEST_CASE("paths refuse scope mistakes and segments that would change the path") {
  CHECK(kube::collection_path(kNamespaces, "shop").error().message ==
        "namespaces is cluster-scoped: namespace 'shop' not allowed");
  CHECK(kube::object_path(kConfigMaps, "", "a").error().message ==
        "configmaps is namespaced: a namespace is required");
  CHECK(kube::object_path(kConfigMaps, "shop", "").error().message == "invalid name ''");
  CHECK(kube::object_path(kConfigMaps, "shop", "a/b").error().message == "invalid name 'a/b'");
  CHECK(kube::object_path(kConfigMaps, "shop", "..").error().message == "invalid name '..'");
  CHECK(kube::object_path(kConfigMaps, "shop", "a?watch=1").error().message ==
        "invalid name 'a?watch=1'");
  CHECK(kube::object_path(kConfigMaps, "shop", "a%2F").error().message == "invalid name 'a%2F'");
  CHECK(kube::object_path(kConfigMaps, "sh op", "a").error().message ==
        "invalid namespace 'sh op'");
  CHECK(kube::object_path(kConfigMaps, "shop", "a", "x/y").error().message ==
        "invalid subresource 'x/y'");
  // Names with colons are legal in Kubernetes (clusterroles) and stay as they are.
  CHECK(kube::object_path(kConfigMaps, "shop", "system:a").value() ==
        "/api/v1/namespaces/shop/configmaps/system:a");
}

TEST_CASE("resource labels and apiVersions") {
  CHECK(kConfigMaps.label() == "configmaps");
  CHECK(kHttpRoutes.label() == "httproutes.gateway.networking.k8s.io");
  CHECK(kConfigMaps.api_version() == "v1");
  CHECK(kHttpRoutes.api_version() == "gateway.networking.k8s.io/v1");
}

TEST_CASE("query strings encode selectors and carry only what is set") {
  CHECK(kube::query_string({}) == "");
  kube::ListOptions o;
  o.label_selector = "app=echo,tier notin (db, cache)";
  o.field_selector = "metadata.name=x";
  o.limit = 2;
  o.continue_token = "eyJ2Ijoi+/=";
  CHECK(kube::query_string(o) ==
        "?labelSelector=app%3Decho%2Ctier%20notin%20%28db%2C%20cache%29"
        "&fieldSelector=metadata.name%3Dx&limit=2&continue=eyJ2Ijoi%2B%2F%3D");
  kube::ListOptions w;
  w.watch = true;
  w.resource_version = "123";
  w.allow_watch_bookmarks = true;
  w.timeout_seconds = 300;
  CHECK(kube::query_string(w) ==
        "?resourceVersion=123&watch=true&allowWatchBookmarks=true&timeoutSeconds=300");
  CHECK(kube::percent_encode("a-b_c.d~e") == "a-b_c.d~e");
  CHECK(kube::percent_encode("\xff ") == "%FF%20");
}

TEST_CASE("api_error reads the apiserver's Status object") {
  auto e = kube::api_error(409, R"({"kind":"Status","apiVersion":"v1","metadata":{},
      "status":"Failure","message":"Operation cannot be fulfilled on configmaps \"a\": the object has been modified",
      "reason":"Conflict","details":{"name":"a","kind":"configmaps"},"code":409})");
  CHECK(e.code == 409);
  CHECK(e.message ==
        "Conflict (409): Operation cannot be fulfilled on configmaps \"a\": the object has been "
        "modified");
  CHECK(kube::is_conflict(e));
  CHECK_FALSE(kube::is_retryable(e));

  auto no_reason = kube::api_error(500, R"({"kind":"Status","message":"boom"})");
  CHECK(no_reason.message == "(500): boom");
  auto no_message = kube::api_error(404, R"({"kind":"Status","reason":"NotFound"})");
  CHECK(no_message.message == "NotFound (404)");
  CHECK(kube::is_not_found(no_message));
}

TEST_CASE("api_error without a Status object shows a sanitized prefix of the body") {
  auto html = kube::api_error(503, "<html>\r\nbusy</html>");
  CHECK(html.code == 503);
  CHECK(html.message == "HTTP 503 Service Unavailable: <html>  busy</html>");
  CHECK(kube::is_retryable(html));
  CHECK(kube::api_error(502, "").message == "HTTP 502 Bad Gateway");
  // JSON that is not a Status is shown as text.
  CHECK(kube::api_error(400, R"({"kind":"Pod"})").message == R"(HTTP 400 Bad Request: {"kind":"Pod"})");
  std::string long_body(500, 'x');
  CHECK(kube::api_error(500, long_body).message ==
        "HTTP 500 Internal Server Error: " + std::string(200, 'x'));
}

TEST_CASE("status_error reads a watch ERROR event's Status and its code") {
  auto doc = trellis::json::Document::parse(
      R"j({"kind":"Status","status":"Failure","message":"too old resource version: 1 (5023)",
          "reason":"Expired","code":410})j",
      {});
  REQUIRE(doc.ok());
  auto e = kube::status_error(doc->root());
  CHECK(e.code == 410);
  CHECK(e.message == "Expired (410): too old resource version: 1 (5023)");
  CHECK(kube::is_gone(e));
  auto not_object = trellis::json::Document::parse("[1]", {});
  CHECK(kube::status_error(not_object->root()).message == "(0): malformed Status object");
  CHECK(kube::is_retryable(trellis::make_error("connect refused", 0)));
  CHECK(kube::is_retryable(trellis::make_error("slow down", 429)));
}
