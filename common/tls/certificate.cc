#include "common/tls/certificate.h"

#include <openssl/asn1.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <climits>
#include <cstring>

#include "common/tls/error.h"
#include "common/tls/internal.h"

namespace trellis::tls {

namespace internal {

std::string take_error_reason() {
  uint32_t e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(e);
  return reason != nullptr ? reason : "error " + std::to_string(e);
}

namespace {

constexpr std::string_view kSpiffeScheme = "spiffe://";

Error invalid(std::string_view what, const std::string& message) {
  return make_tls_error(ErrorCode::invalid_argument,
                        what.empty() ? message : std::string(what) + ": " + message);
}

struct PemBlock {
  bssl::UniquePtr<char> name;
  bssl::UniquePtr<char> header;
  bssl::UniquePtr<uint8_t> data;
  long size = 0;
};

// Reads the next PEM block. `end` is set when only non-PEM text remains.
Result<PemBlock> next_block(BIO* bio, int index, std::string_view what, bool& end) {
  char* name = nullptr;
  char* header = nullptr;
  uint8_t* data = nullptr;
  long size = 0;
  ERR_clear_error();
  if (PEM_read_bio(bio, &name, &header, &data, &size) != 1) {
    uint32_t e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
      ERR_clear_error();
      end = true;
      return PemBlock{};
    }
    return invalid(what, "PEM block " + std::to_string(index) + ": " + take_error_reason());
  }
  PemBlock block;
  block.name.reset(name);
  block.header.reset(header);
  block.data.reset(data);
  block.size = size;
  return block;
}

Result<bssl::UniquePtr<BIO>> open_pem(std::string_view pem, std::string_view what) {
  if (pem.size() > static_cast<size_t>(INT_MAX)) return invalid(what, "PEM input too large");
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return invalid(what, "out of memory");
  return bio;
}

Result<bssl::UniquePtr<X509>> parse_der(const uint8_t* der, size_t size) {
  const uint8_t* p = der;
  ERR_clear_error();
  bssl::UniquePtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(size)));
  if (!cert) return invalid("", "not a valid X.509 certificate: " + take_error_reason());
  if (p != der + size) return invalid("", "trailing data after the certificate");
  return cert;
}

int64_t to_unix_seconds(const ASN1_TIME* time) {
  bssl::UniquePtr<ASN1_TIME> epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0;
  int seconds = 0;
  if (!epoch || ASN1_TIME_diff(&days, &seconds, epoch.get(), time) != 1) {
    ERR_clear_error();
    return 0;
  }
  return static_cast<int64_t>(days) * 86400 + seconds;
}

}  // namespace

Result<std::vector<bssl::UniquePtr<X509>>> parse_certificates(std::string_view pem,
                                                              std::string_view what) {
  auto bio = open_pem(pem, what);
  if (!bio.ok()) return std::move(bio).error();
  std::vector<bssl::UniquePtr<X509>> certs;
  for (int index = 1;; ++index) {
    bool end = false;
    auto block = next_block(bio->get(), index, what, end);
    if (!block.ok()) return std::move(block).error();
    if (end) break;
    std::string prefix = "PEM block " + std::to_string(index) + ": ";
    if (std::strcmp(block->name.get(), "CERTIFICATE") != 0) {
      return invalid(what, prefix + "expected CERTIFICATE, found " + block->name.get());
    }
    auto cert = parse_der(block->data.get(), static_cast<size_t>(block->size));
    if (!cert.ok()) return invalid(what, prefix + cert.error().message);
    certs.push_back(std::move(cert).value());
  }
  if (certs.empty()) return invalid(what, "no PEM certificate found");
  return certs;
}

Result<bssl::UniquePtr<EVP_PKEY>> parse_private_key(std::string_view pem, std::string_view what) {
  auto bio = open_pem(pem, what);
  if (!bio.ok()) return std::move(bio).error();
  for (int index = 1;; ++index) {
    bool end = false;
    auto block = next_block(bio->get(), index, what, end);
    if (!block.ok()) return std::move(block).error();
    if (end) break;
    std::string prefix = "PEM block " + std::to_string(index) + ": ";
    std::string_view name = block->name.get();
    // `openssl ecparam -genkey` writes the curve before the key.
    if (name == "EC PARAMETERS") continue;
    if (name == "ENCRYPTED PRIVATE KEY" || block->header.get()[0] != '\0') {
      return invalid(what, prefix + "encrypted private keys are not supported");
    }
    int type = EVP_PKEY_NONE;
    if (name == "EC PRIVATE KEY") {
      type = EVP_PKEY_EC;
    } else if (name == "RSA PRIVATE KEY") {
      type = EVP_PKEY_RSA;
    } else if (name != "PRIVATE KEY") {
      return invalid(what, prefix + "expected a private key, found " + std::string(name));
    }
    const uint8_t* der = block->data.get();
    const uint8_t* p = der;
    ERR_clear_error();
    bssl::UniquePtr<EVP_PKEY> key;
    if (type == EVP_PKEY_NONE) {
      CBS cbs;
      CBS_init(&cbs, der, static_cast<size_t>(block->size));
      key.reset(EVP_parse_private_key(&cbs));
      p = CBS_data(&cbs);
    } else {
      key.reset(d2i_PrivateKey(type, nullptr, &p, block->size));
    }
    if (!key) return invalid(what, prefix + "not a valid private key: " + take_error_reason());
    if (p != der + block->size) {
      return invalid(what, prefix + "trailing data after the private key");
    }
    return key;
  }
  return invalid(what, "no PEM private key found");
}

Result<SubjectAltNames> read_subject_alt_names(const X509* cert) {
  int critical = -1;
  bssl::UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, &critical, nullptr)));
  SubjectAltNames sans;
  if (!names) {
    ERR_clear_error();
    if (critical == -1) return sans;  // no subjectAltName at all
    return invalid("", critical == -2 ? "certificate has more than one subjectAltName extension"
                                      : "certificate has an invalid subjectAltName extension");
  }
  for (size_t i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI && name->type != GEN_DNS) continue;
    const ASN1_IA5STRING* value = name->d.ia5;
    std::string text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                     static_cast<size_t>(ASN1_STRING_length(value)));
    (name->type == GEN_URI ? sans.uris : sans.dns).push_back(std::move(text));
  }
  return sans;
}

}  // namespace internal

Result<std::vector<std::string>> parse_pem_certificates(std::string_view pem) {
  auto certs = internal::parse_certificates(pem, "");
  if (!certs.ok()) return std::move(certs).error();
  std::vector<std::string> ders;
  ders.reserve(certs->size());
  for (const auto& cert : *certs) {
    uint8_t* der = nullptr;
    int size = i2d_X509(cert.get(), &der);
    if (size <= 0) {
      return make_tls_error(ErrorCode::invalid_argument,
                            "cannot re-encode certificate: " + internal::take_error_reason());
    }
    bssl::UniquePtr<uint8_t> owned(der);
    ders.emplace_back(reinterpret_cast<const char*>(der), static_cast<size_t>(size));
  }
  return ders;
}

Result<CertificateInfo> inspect_certificate(std::string_view der) {
  auto cert = internal::parse_der(reinterpret_cast<const uint8_t*>(der.data()), der.size());
  if (!cert.ok()) return std::move(cert).error();
  auto sans = internal::read_subject_alt_names(cert->get());
  if (!sans.ok()) return std::move(sans).error();
  CertificateInfo info;
  info.not_before = internal::to_unix_seconds(X509_get0_notBefore(cert->get()));
  info.not_after = internal::to_unix_seconds(X509_get0_notAfter(cert->get()));
  info.uri_sans = std::move(sans->uris);
  info.dns_sans = std::move(sans->dns);
  return info;
}

Result<std::string> spiffe_id_from_uri_sans(const std::vector<std::string>& uri_sans) {
  const std::string* found = nullptr;
  size_t count = 0;
  for (const auto& uri : uri_sans) {
    if (uri.compare(0, internal::kSpiffeScheme.size(), internal::kSpiffeScheme) != 0) continue;
    found = &uri;
    ++count;
  }
  if (count == 1) return *found;
  if (count == 0) return make_tls_error(ErrorCode::peer_identity, "no spiffe:// URI SAN");
  return make_tls_error(ErrorCode::peer_identity,
                        std::to_string(count) + " spiffe:// URI SANs, expected exactly one");
}

std::string_view spiffe_trust_domain(std::string_view spiffe_id) {
  if (spiffe_id.substr(0, internal::kSpiffeScheme.size()) != internal::kSpiffeScheme) return {};
  std::string_view rest = spiffe_id.substr(internal::kSpiffeScheme.size());
  return rest.substr(0, rest.find('/'));
}

}  // namespace trellis::tls
