#include "tests/unit/common/tls/test_pki.h"

#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <ctime>

namespace trellis::tls::test {

namespace {

bssl::UniquePtr<EVP_PKEY> generate_p256_key() {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  REQUIRE(ec);
  REQUIRE(EC_KEY_generate_key(ec.get()) == 1);
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  REQUIRE(EVP_PKEY_assign_EC_KEY(key.get(), ec.release()) == 1);
  return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
  REQUIRE_MESSAGE(ext, "extension ", nid, " = ", value);
  REQUIRE(X509_add_ext(cert, ext.get(), -1) == 1);
}

std::string to_pem(X509* cert) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  REQUIRE(PEM_write_bio_X509(bio.get(), cert) == 1);
  const uint8_t* data = nullptr;
  size_t len = 0;
  REQUIRE(BIO_mem_contents(bio.get(), &data, &len) == 1);
  return std::string(reinterpret_cast<const char*>(data), len);
}

std::string to_pem(EVP_PKEY* key) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  REQUIRE(PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) ==
          1);
  const uint8_t* data = nullptr;
  size_t len = 0;
  REQUIRE(BIO_mem_contents(bio.get(), &data, &len) == 1);
  return std::string(reinterpret_cast<const char*>(data), len);
}

std::string to_der(X509* cert) {
  uint8_t* der = nullptr;
  int len = i2d_X509(cert, &der);
  REQUIRE(len > 0);
  bssl::UniquePtr<uint8_t> owned(der);
  return std::string(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
}

// An unsigned certificate for `key` named `common_name`, issued by `issuer`
// (self-issued when null).
bssl::UniquePtr<X509> make_certificate(const std::string& common_name, EVP_PKEY* key,
                                       X509* issuer, int64_t not_before, int64_t not_after) {
  static uint64_t serial = 1;
  bssl::UniquePtr<X509> cert(X509_new());
  REQUIRE(X509_set_version(cert.get(), X509_VERSION_3) == 1);
  REQUIRE(ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial++) == 1);
  X509_NAME* name = X509_get_subject_name(cert.get());
  REQUIRE(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                     reinterpret_cast<const uint8_t*>("Trellis Test"), -1, -1,
                                     0) == 1);
  REQUIRE(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                     reinterpret_cast<const uint8_t*>(common_name.c_str()), -1,
                                     -1, 0) == 1);
  REQUIRE(X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer)
                                                              : name) == 1);
  time_t now = time(nullptr);
  REQUIRE(X509_time_adj_ex(X509_getm_notBefore(cert.get()), 0, static_cast<long>(not_before),
                           &now));
  REQUIRE(
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), 0, static_cast<long>(not_after), &now));
  REQUIRE(X509_set_pubkey(cert.get(), key) == 1);
  return cert;
}

void sign(X509* cert, EVP_PKEY* issuer_key) {
  REQUIRE(X509_sign(cert, issuer_key, EVP_sha256()) > 0);
}

std::string join_names(const char* type, const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ",";
    out += std::string(type) + ":" + n;
  }
  return out;
}

}  // namespace

TestCa TestCa::root(const std::string& common_name) {
  TestCa ca;
  ca.key_ = generate_p256_key();
  ca.cert_ = make_certificate(common_name, ca.key_.get(), nullptr, -3600, 3650 * 86400);
  add_extension(ca.cert_.get(), ca.cert_.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(ca.cert_.get(), ca.cert_.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(ca.cert_.get(), ca.cert_.get(), NID_subject_key_identifier, "hash");
  sign(ca.cert_.get(), ca.key_.get());
  ca.cert_pem_ = to_pem(ca.cert_.get());
  return ca;
}

TestCa TestCa::intermediate(const std::string& common_name) const {
  TestCa ca;
  ca.key_ = generate_p256_key();
  ca.cert_ = make_certificate(common_name, ca.key_.get(), cert_.get(), -3600,
                              365 * 86400);
  add_extension(ca.cert_.get(), cert_.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_extension(ca.cert_.get(), cert_.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(ca.cert_.get(), cert_.get(), NID_subject_key_identifier, "hash");
  add_extension(ca.cert_.get(), cert_.get(), NID_authority_key_identifier, "keyid:always");
  sign(ca.cert_.get(), key_.get());
  ca.cert_pem_ = to_pem(ca.cert_.get());
  ca.chain_pem_ = ca.cert_pem_ + chain_pem_;
  return ca;
}

Leaf TestCa::issue(const LeafSpec& spec) const {
  bssl::UniquePtr<EVP_PKEY> key = generate_p256_key();
  bssl::UniquePtr<X509> cert = make_certificate(spec.common_name, key.get(), cert_.get(),
                                                spec.not_before, spec.not_after);
  add_extension(cert.get(), cert_.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), cert_.get(), NID_key_usage, "critical,digitalSignature");
  add_extension(cert.get(), cert_.get(), NID_ext_key_usage, "serverAuth,clientAuth");
  add_extension(cert.get(), cert_.get(), NID_authority_key_identifier, "keyid:always");
  std::string sans;
  for (const auto& part : {join_names("URI", spec.uri_sans), join_names("DNS", spec.dns_sans),
                           join_names("IP", spec.ip_sans)}) {
    if (part.empty()) continue;
    if (!sans.empty()) sans += ",";
    sans += part;
  }
  if (!sans.empty()) add_extension(cert.get(), cert_.get(), NID_subject_alt_name, sans);
  sign(cert.get(), key_.get());
  Leaf leaf;
  leaf.chain_pem = to_pem(cert.get()) + chain_pem_;
  leaf.key_pem = to_pem(key.get());
  leaf.cert_der = to_der(cert.get());
  return leaf;
}

const Pki& pki() {
  static const Pki instance = [] {
    TestCa root = TestCa::root("Trellis Test Root");
    TestCa intermediate = root.intermediate("Trellis Test Intermediate");
    TestCa other_root = TestCa::root("Unrelated Root");
    LeafSpec server{"echo", {"spiffe://cluster.local/ns/shop/sa/echo"},
                    {"echo.shop.svc.cluster.local"}, {"10.96.0.10"}};
    LeafSpec client{
        "default", {"spiffe://cluster.local/ns/shop/sa/default"}, {"default.shop.svc"}, {}};
    LeafSpec expired = client;
    expired.not_before = -2 * 86400;
    expired.not_after = -86400;
    Pki p{std::move(root), std::move(intermediate), std::move(other_root), {}, {}, {}, {}};
    p.server = p.intermediate.issue(server);
    p.client = p.intermediate.issue(client);
    p.expired = p.intermediate.issue(expired);
    p.unrelated = p.other_root.issue(client);
    return p;
  }();
  return instance;
}

}  // namespace trellis::tls::test
