#include "common/tls/certificate.h"

#include <doctest/doctest.h>

#include <ctime>

#include "common/tls/error.h"
#include "tests/unit/common/tls/test_pki.h"

using namespace trellis;
using namespace trellis::tls;
using trellis::tls::test::pki;

namespace {

std::string parse_error(std::string_view pem) {
  auto certs = parse_pem_certificates(pem);
  if (certs.ok()) return "(ok)";
  CHECK(error_code(certs.error()) == ErrorCode::invalid_argument);
  return certs.error().message;
}

}  // namespace

TEST_CASE("parse_pem_certificates splits a bundle in order and skips text between blocks") {
  std::string bundle = "# old root\n" + pki().root.cert_pem() + "\n# new root\n" +
                       pki().other_root.cert_pem() + "trailing comment\n";
  auto certs = parse_pem_certificates(bundle);
  REQUIRE(certs.ok());
  CHECK(certs->size() == 2);

  auto chain = parse_pem_certificates(pki().client.chain_pem);
  REQUIRE(chain.ok());
  REQUIRE(chain->size() == 2);  // leaf + intermediate
  CHECK((*chain)[0] == pki().client.cert_der);
}

TEST_CASE("parse_pem_certificates names the bad block and BoringSSL's reason") {
  CHECK(parse_error("") == "no PEM certificate found");
  CHECK(parse_error("not pem at all\n") == "no PEM certificate found");
  CHECK(parse_error("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n") ==
        "PEM block 1: BAD_BASE64_DECODE");
  CHECK(parse_error("-----BEGIN CERTIFICATE-----\nMIIB\n") == "PEM block 1: BAD_END_LINE");
  CHECK(parse_error(pki().root.cert_pem() + "-----BEGIN CERTIFICATE-----\nAAAA\n"
                                            "-----END CERTIFICATE-----\n") ==
        "PEM block 2: not a valid X.509 certificate: HEADER_TOO_LONG");
  CHECK(parse_error(pki().root.cert_pem() + pki().client.key_pem) ==
        "PEM block 2: expected CERTIFICATE, found PRIVATE KEY");
}

TEST_CASE("inspect_certificate reads validity and SANs") {
  auto info = inspect_certificate(pki().client.cert_der);
  REQUIRE(info.ok());
  CHECK(info->uri_sans == std::vector<std::string>{"spiffe://cluster.local/ns/shop/sa/default"});
  CHECK(info->dns_sans == std::vector<std::string>{"default.shop.svc"});
  CHECK(info->not_after - info->not_before == 24 * 3600 + 3600);
  int64_t now = static_cast<int64_t>(time(nullptr));
  CHECK(info->not_before <= now - 3600 + 5);
  CHECK(info->not_before >= now - 3600 - 300);

  auto server = inspect_certificate(pki().server.cert_der);
  REQUIRE(server.ok());
  // IP SANs are neither URIs nor DNS names.
  CHECK(server->dns_sans == std::vector<std::string>{"echo.shop.svc.cluster.local"});

  auto expired = inspect_certificate(pki().expired.cert_der);
  REQUIRE(expired.ok());
  CHECK(expired->not_after < now);
}

TEST_CASE("inspect_certificate rejects what is not exactly one certificate") {
  auto garbage = inspect_certificate("garbage");
  REQUIRE_FALSE(garbage.ok());
  CHECK(garbage.error().message == "not a valid X.509 certificate: HEADER_TOO_LONG");
  CHECK(error_code(garbage.error()) == ErrorCode::invalid_argument);

  auto trailing = inspect_certificate(pki().client.cert_der + "x");
  REQUIRE_FALSE(trailing.ok());
  CHECK(trailing.error().message == "trailing data after the certificate");

  auto truncated = inspect_certificate(pki().client.cert_der.substr(0, 100));
  REQUIRE_FALSE(truncated.ok());
  CHECK(truncated.error().message.rfind("not a valid X.509 certificate: ", 0) == 0);
}

TEST_CASE("spiffe_id_from_uri_sans wants exactly one spiffe:// URI") {
  auto one = spiffe_id_from_uri_sans({"https://example.com/x", "spiffe://cluster.local/ns/a/sa/b"});
  REQUIRE(one.ok());
  CHECK(*one == "spiffe://cluster.local/ns/a/sa/b");

  auto none = spiffe_id_from_uri_sans({"https://example.com/x", "SPIFFE-like"});
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().message == "no spiffe:// URI SAN");
  CHECK(error_code(none.error()) == ErrorCode::peer_identity);

  auto two = spiffe_id_from_uri_sans({"spiffe://a/ns/x/sa/y", "spiffe://b/ns/x/sa/y"});
  REQUIRE_FALSE(two.ok());
  CHECK(two.error().message == "2 spiffe:// URI SANs, expected exactly one");
}

TEST_CASE("spiffe_trust_domain") {
  CHECK(spiffe_trust_domain("spiffe://cluster.local/ns/shop/sa/default") == "cluster.local");
  CHECK(spiffe_trust_domain("spiffe://cluster.local") == "cluster.local");
  CHECK(spiffe_trust_domain("https://cluster.local/ns") == "");
  CHECK(spiffe_trust_domain("") == "");
}

TEST_CASE("error_code_name gives stable label values") {
  CHECK(error_code_name(ErrorCode::invalid_argument) == "invalid_argument");
  CHECK(error_code_name(ErrorCode::protocol) == "protocol");
  CHECK(error_code_name(ErrorCode::peer_alert) == "peer_alert");
  CHECK(error_code_name(ErrorCode::peer_certificate) == "peer_certificate");
  CHECK(error_code_name(ErrorCode::peer_identity) == "peer_identity");
  CHECK(error_code_name(ErrorCode::alpn) == "alpn");
  CHECK(error_code_name(ErrorCode::truncated) == "truncated");
  CHECK(error_code_name(ErrorCode::closed) == "closed");
}
