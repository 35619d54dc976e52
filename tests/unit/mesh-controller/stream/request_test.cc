#include "mesh-controller/stream/request.h"

#include <doctest/doctest.h>

using namespace trellis;
using namespace trellis::controller::stream;

namespace {

http::RequestHead request(std::string target, std::string method = "GET") {
  http::RequestHead head;
  head.method = std::move(method);
  head.target = std::move(target);
  return head;
}

RequestPolicy insecure() {
  RequestPolicy p;
  p.insecure_namespace_from_query = true;
  return p;
}

Error refused(const http::RequestHead& head, const std::optional<std::string>& identity,
              const RequestPolicy& policy) {
  auto ns = client_namespace(head, identity, policy);
  REQUIRE_FALSE(ns.ok());
  return ns.error();
}

}  // namespace

TEST_CASE("with the insecure flag, the namespace comes from the query parameter") {
  auto ns = client_namespace(request("/v1/route-table?namespace=shop"), std::nullopt, insecure());
  REQUIRE(ns.ok());
  CHECK(*ns == "shop");
  CHECK(*client_namespace(request("/v1/route-table?x=1&namespace=a-1&namespace=b"), std::nullopt,
                          insecure()) == "a-1");
  CHECK(*client_namespace(request("/v1/route-table?namespace=sh%6Fp"), std::nullopt, insecure()) ==
        "shop");
}

TEST_CASE("refused requests carry their HTTP status and an exact explanation") {
  Error e = refused(request("/v1/tables?namespace=shop"), std::nullopt, insecure());
  CHECK(e.code == 404);
  CHECK(e.message == "no such path '/v1/tables': the route-table stream is GET /v1/route-table");

  e = refused(request("/v1/route-table?namespace=shop", "POST"), std::nullopt, insecure());
  CHECK(e.code == 405);
  CHECK(e.message == "method 'POST' not allowed: the route-table stream is GET /v1/route-table");

  e = refused(request("/v1/route-table"), std::nullopt, insecure());
  CHECK(e.code == 400);
  CHECK(e.message == "missing query parameter 'namespace'");

  e = refused(request("/v1/route-table?namespace=Shop_1"), std::nullopt, insecure());
  CHECK(e.code == 400);
  CHECK(e.message ==
        "query parameter 'namespace': invalid value 'Shop_1' (want a DNS label: 1-63 lowercase "
        "letters, digits and '-', starting and ending with a letter or digit)");

  e = refused(request("/v1/route-table?namespace="), std::nullopt, insecure());
  CHECK(e.code == 400);

  // Without the flag and without mTLS nothing proves who is asking.
  e = refused(request("/v1/route-table?namespace=shop"), std::nullopt, RequestPolicy{});
  CHECK(e.code == 403);
  CHECK(e.message ==
        "the route-table namespace comes from the peer's mTLS identity, which this controller "
        "cannot verify yet (no mTLS); it takes the 'namespace' query parameter instead only when "
        "started with --insecure-namespace-from-query (tests and the sandbox only)");
}

TEST_CASE("a peer identity decides the namespace; the query may only agree with it") {
  const std::string id = "spiffe://cluster.local/ns/shop/sa/default";
  CHECK(*client_namespace(request("/v1/route-table"), id, RequestPolicy{}) == "shop");
  CHECK(*client_namespace(request("/v1/route-table?namespace=shop"), id, insecure()) == "shop");

  Error e = refused(request("/v1/route-table?namespace=bank"), id, insecure());
  CHECK(e.code == 403);
  CHECK(e.message ==
        "query parameter 'namespace' ('bank') does not match the namespace of the peer identity "
        "('shop')");

  e = refused(request("/v1/route-table"), std::string("spiffe://other.domain/ns/shop/sa/x"),
              RequestPolicy{});
  CHECK(e.code == 403);
  CHECK(e.message ==
        "peer identity 'spiffe://other.domain/ns/shop/sa/x' is not a workload identity of trust "
        "domain 'cluster.local' (want spiffe://cluster.local/ns/<namespace>/sa/<service "
        "account>)");
}

TEST_CASE("identity_namespace accepts only spiffe://<domain>/ns/<ns>/sa/<sa>") {
  CHECK(*identity_namespace("spiffe://cluster.local/ns/a/sa/b", "cluster.local") == "a");
  for (const char* bad : {"spiffe://cluster.local/ns/a", "spiffe://cluster.local/ns/a/sa/",
                          "spiffe://cluster.local/ns/a/sa/b/c", "spiffe://cluster.local/ns/A/sa/b",
                          "spiffe://cluster.local/ns//sa/b", "spiffe://cluster.local.evil/ns/a/sa/b",
                          "https://cluster.local/ns/a/sa/b", ""}) {
    CAPTURE(bad);
    auto ns = identity_namespace(bad, "cluster.local");
    REQUIRE_FALSE(ns.ok());
    CHECK(ns.error().code == 403);
  }
}

TEST_CASE("query_parameter form-decodes and tells absent from empty") {
  CHECK(query_parameter("/p", "namespace") == std::nullopt);
  CHECK(query_parameter("/p?other=1", "namespace") == std::nullopt);
  CHECK(query_parameter("/p?namespace", "namespace") == std::string());
  CHECK(query_parameter("/p?namespace=", "namespace") == std::string());
  CHECK(query_parameter("/p?namespace=a+b%20c", "namespace") == std::string("a b c"));
  CHECK(query_parameter("/p?namespace=50%", "namespace") == std::string("50%"));
  CHECK(query_parameter("/p?namespace=%zz", "namespace") == std::string("%zz"));
  CHECK(query_parameter("/p?names%70ace=x", "namespace") == std::string("x"));
  CHECK(query_parameter("/p?namespace=x#frag", "namespace") == std::string("x"));
}

TEST_CASE("check_dns_label") {
  for (std::string ok : {std::string("a"), std::string("shop"), std::string("a-1"),
                         std::string("0"), std::string(63, 'a')}) {
    CAPTURE(ok);
    CHECK(check_dns_label(ok).ok());
  }
  for (std::string bad : {std::string(), std::string("-a"), std::string("a-"), std::string("A"),
                          std::string("a.b"), std::string(64, 'a'), std::string("a\nb")}) {
    CAPTURE(bad);
    CHECK_FALSE(check_dns_label(bad).ok());
  }
  CHECK(check_dns_label("a\x01").error().message ==
        "invalid value 'a?' (want a DNS label: 1-63 lowercase letters, digits and '-', starting "
        "and ending with a letter or digit)");
}
