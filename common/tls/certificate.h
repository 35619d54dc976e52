// PEM and X.509 helpers for callers of the TLS layer: split a PEM bundle into
// DER certificates, read a certificate's validity and SANs (e.g. for renewal at
// 70 % of lifetime and the expiry metric), and pick the SPIFFE ID out of URI
// SANs. Loading files is the caller's job; these work on bytes in memory.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace trellis::tls {

struct CertificateInfo {
  int64_t not_before = 0;  // seconds since the Unix epoch
  int64_t not_after = 0;
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
};

// Every CERTIFICATE block of `pem`, in order, as DER. Text outside PEM blocks
// is ignored (bundles often carry comments); any other block type, bad base64
// or a block that is not a valid X.509 certificate is an error naming the
// block ("PEM block 2: ..."). No certificate at all is an error too.
Result<std::vector<std::string>> parse_pem_certificates(std::string_view pem);

// Decodes one DER certificate (the whole input must be the certificate).
Result<CertificateInfo> inspect_certificate(std::string_view der);

// The one spiffe:// URI among `uri_sans`. Zero or several are errors: an
// X.509-SVID names exactly one identity.
Result<std::string> spiffe_id_from_uri_sans(const std::vector<std::string>& uri_sans);

// The trust domain of a SPIFFE ID ("cluster.local" for
// "spiffe://cluster.local/ns/shop/sa/default"); empty if `spiffe_id` does not
// start with "spiffe://".
std::string_view spiffe_trust_domain(std::string_view spiffe_id);

}  // namespace trellis::tls
