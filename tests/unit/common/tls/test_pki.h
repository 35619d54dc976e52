// An in-memory test PKI built with BoringSSL: ECDSA P-256 CAs and leaves with
// SPIFFE URI SANs, DNS and IP SANs, chosen validity. Nothing touches disk.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <string>
#include <vector>

namespace trellis::tls::test {

// What a ContextConfig needs for one identity.
struct Leaf {
  std::string chain_pem;  // leaf, then the intermediates up to (excluding) the root
  std::string key_pem;    // PKCS#8
  std::string cert_der;   // the leaf alone
};

struct LeafSpec {
  std::string common_name = "leaf";
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;
  // Validity relative to now, in seconds.
  int64_t not_before = -3600;
  int64_t not_after = 24 * 3600;
};

class TestCa {
 public:
  static TestCa root(const std::string& common_name);
  TestCa intermediate(const std::string& common_name) const;
  Leaf issue(const LeafSpec& spec) const;

  // This CA's own certificate (a trust anchor when this is a root).
  const std::string& cert_pem() const { return cert_pem_; }

 private:
  bssl::UniquePtr<X509> cert_;
  bssl::UniquePtr<EVP_PKEY> key_;
  std::string cert_pem_;
  // Certificates a leaf of this CA sends after itself: this CA and its
  // parents, excluding the root.
  std::string chain_pem_;
};

struct Pki {
  TestCa root;          // "Trellis Test Root"
  TestCa intermediate;  // under root; issues every leaf below except `unrelated`
  TestCa other_root;    // an unrelated CA
  // spiffe://cluster.local/ns/shop/sa/echo, DNS echo.shop.svc.cluster.local,
  // IP 10.96.0.10.
  Leaf server;
  // spiffe://cluster.local/ns/shop/sa/default, DNS default.shop.svc.
  Leaf client;
  Leaf expired;    // like client, but expired a day ago
  Leaf unrelated;  // like client, issued by other_root
};

// Generated once per process.
const Pki& pki();

}  // namespace trellis::tls::test
