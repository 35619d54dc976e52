// BoringSSL plumbing shared by the files of common/tls; not for callers.
#pragma once

#include <openssl/base.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace trellis::tls::internal {

// The reason string of the earliest error on this thread's BoringSSL error
// queue (the root cause; later entries only add context), e.g.
// "WRONG_VERSION_NUMBER". Clears the queue. "unknown error" if it was empty.
std::string take_error_reason();

// `what` is prepended to error messages ("trust_bundle_pem: ...").
Result<std::vector<bssl::UniquePtr<X509>>> parse_certificates(std::string_view pem,
                                                              std::string_view what);
Result<bssl::UniquePtr<EVP_PKEY>> parse_private_key(std::string_view pem, std::string_view what);

struct SubjectAltNames {
  std::vector<std::string> uris;
  std::vector<std::string> dns;
};
Result<SubjectAltNames> read_subject_alt_names(const X509* cert);

// BoringSSL callbacks of a Session (defined in session.cc). Context::create
// installs the SSL_CTX-level ones.
struct SessionCallbacks {
  static int bio_read(BIO* bio, char* out, int len);
  static int bio_write(BIO* bio, const char* data, int len);
  static int verify_certificate(X509_STORE_CTX* store, void* arg);
  static int select_alpn(SSL* ssl, const uint8_t** out, uint8_t* out_len, const uint8_t* in,
                         unsigned in_len, void* arg);
  static enum ssl_select_cert_result_t check_client_hello(const SSL_CLIENT_HELLO* hello);
};

}  // namespace trellis::tls::internal
