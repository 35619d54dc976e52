#include "common/tls/context.h"

#include <doctest/doctest.h>
#include <openssl/ec_key.h>
#include <openssl/pem.h>

#include "common/tls/error.h"
#include "tests/unit/common/tls/harness.h"

using namespace trellis;
using namespace trellis::tls;
using namespace trellis::tls::test;

namespace {

std::string create_error(const ContextConfig& config) {
  auto context = Context::create(config);
  if (context.ok()) return "(ok)";
  CHECK(error_code(context.error()) == ErrorCode::invalid_argument);
  return context.error().message;
}

// The test PKI's client key re-encoded as SEC1 "EC PRIVATE KEY".
std::string sec1_key_pem() {
  bssl::UniquePtr<BIO> in(BIO_new_mem_buf(pki().client.key_pem.data(),
                                          static_cast<int>(pki().client.key_pem.size())));
  bssl::UniquePtr<EVP_PKEY> key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
  REQUIRE(key);
  bssl::UniquePtr<BIO> out(BIO_new(BIO_s_mem()));
  REQUIRE(PEM_write_bio_ECPrivateKey(out.get(), EVP_PKEY_get0_EC_KEY(key.get()), nullptr, nullptr,
                                     0, nullptr, nullptr) == 1);
  const uint8_t* data = nullptr;
  size_t len = 0;
  REQUIRE(BIO_mem_contents(out.get(), &data, &len) == 1);
  return std::string(reinterpret_cast<const char*>(data), len);
}

const char kBadBase64Cert[] = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";

}  // namespace

TEST_CASE("valid server and client contexts") {
  auto server = Context::create(server_config());
  REQUIRE(server.ok());
  CHECK((*server)->role() == Role::server);
  CHECK((*server)->alpn_protocols() == std::vector<std::string>{"trellis-h2"});

  auto client = Context::create(client_config());
  REQUIRE(client.ok());
  CHECK((*client)->role() == Role::client);

  // A server-auth-only client (kube API client) needs no certificate.
  ContextConfig anonymous = client_config();
  anonymous.certificate_chain_pem.clear();
  anonymous.private_key_pem.clear();
  anonymous.min_version = TlsVersion::tls1_2;
  CHECK(Context::create(anonymous).ok());

  // SEC1 keys, as `openssl ecparam -genkey` writes them, with the curve block.
  ContextConfig sec1 = client_config();
  sec1.private_key_pem =
      "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" +
      sec1_key_pem();
  CHECK(create_error(sec1) == "(ok)");
}

TEST_CASE("config combinations that cannot work are rejected") {
  ContextConfig c = server_config();
  c.certificate_chain_pem.clear();
  c.private_key_pem.clear();
  CHECK(create_error(c) == "certificate_chain_pem: required for a server");

  c = client_config();
  c.private_key_pem.clear();
  CHECK(create_error(c) == "private_key_pem: required with certificate_chain_pem");

  c = client_config();
  c.certificate_chain_pem.clear();
  CHECK(create_error(c) == "certificate_chain_pem: required with private_key_pem");

  c = server_config();
  c.trust_bundle_pem.clear();
  CHECK(create_error(c) == "trust_bundle_pem: required when verify_peer is set");

  c = client_config();
  c.verify_peer = false;
  c.peer_check = expect_trust_domain("cluster.local");
  CHECK(create_error(c) == "peer_check: requires verify_peer");

  c = client_config();
  c.max_version = TlsVersion::tls1_2;
  CHECK(create_error(c) == "min_version: TLSv1.3 is above max_version TLSv1.2");

  c = client_config();
  c.alpn_protocols = {"trellis-h2", ""};
  CHECK(create_error(c) == "alpn_protocols[1]: must be 1 to 255 bytes long");
  c.alpn_protocols = {std::string(256, 'x')};
  CHECK(create_error(c) == "alpn_protocols[0]: must be 1 to 255 bytes long");
}

TEST_CASE("bad PEM inputs give exact errors naming the field") {
  ContextConfig c = server_config();
  c.certificate_chain_pem = "garbage";
  CHECK(create_error(c) == "certificate_chain_pem: no PEM certificate found");
  c.certificate_chain_pem = kBadBase64Cert;
  CHECK(create_error(c) == "certificate_chain_pem: PEM block 1: BAD_BASE64_DECODE");
  c.certificate_chain_pem = pki().server.key_pem;
  CHECK(create_error(c) ==
        "certificate_chain_pem: PEM block 1: expected CERTIFICATE, found PRIVATE KEY");

  c = server_config();
  c.private_key_pem = "garbage";
  CHECK(create_error(c) == "private_key_pem: no PEM private key found");
  c.private_key_pem = pki().server.chain_pem;
  CHECK(create_error(c) ==
        "private_key_pem: PEM block 1: expected a private key, found CERTIFICATE");
  c.private_key_pem =
      "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
  CHECK(create_error(c) ==
        "private_key_pem: PEM block 1: encrypted private keys are not supported");
  c.private_key_pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  CHECK(create_error(c) == "private_key_pem: PEM block 1: not a valid private key: DECODE_ERROR");
  c.private_key_pem = "-----BEGIN PRIVATE KEY-----\nAAAA";
  CHECK(create_error(c) == "private_key_pem: PEM block 1: BAD_END_LINE");

  c = server_config();
  c.trust_bundle_pem = "garbage";
  CHECK(create_error(c) == "trust_bundle_pem: no PEM certificate found");
  c.trust_bundle_pem = pki().root.cert_pem() + kBadBase64Cert;
  CHECK(create_error(c) == "trust_bundle_pem: PEM block 2: BAD_BASE64_DECODE");
}

TEST_CASE("a key that does not belong to the certificate is rejected") {
  ContextConfig c = server_config();
  c.private_key_pem = pki().client.key_pem;
  CHECK(create_error(c) == "private_key_pem: does not match the certificate: KEY_VALUES_MISMATCH");
}
