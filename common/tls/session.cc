#include "common/tls/session.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/pool.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "common/tls/certificate.h"
#include "common/tls/error.h"
#include "common/tls/internal.h"

namespace trellis::tls {

namespace {

// One TLS record's worth of plaintext: SSL_read never returns more at once.
constexpr size_t kReadChunk = 16384;

Error invalid(std::string message) {
  return make_tls_error(ErrorCode::invalid_argument, std::move(message));
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out.empty() ? "none" : out;
}

// Letters, digits, '-', '_' and '.', at most 253 bytes: what SNI may carry.
bool is_dns_name(const std::string& name) {
  if (name.size() > 253) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.';
  });
}

bool is_ip_address(const std::string& name) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

long bio_ctrl(BIO*, int cmd, long, void*) {
  // SSL flushes after each flight; our writes are already in the output.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

// The BIO between BoringSSL and a Session: reads the span being fed in place
// and appends writes to the Session's output, so ciphertext crosses it with
// one copy each way and no intermediate ring or memmove (a memory BIO would
// shift its whole remaining buffer on every read).
// Built once and kept for the life of the process.
const BIO_METHOD* session_bio_method() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "trellis-tls");
    if (m != nullptr) {
      BIO_meth_set_read(m, &internal::SessionCallbacks::bio_read);
      BIO_meth_set_write(m, &internal::SessionCallbacks::bio_write);
      BIO_meth_set_ctrl(m, bio_ctrl);
    }
    return m;
  }();
  return method;
}

}  // namespace

Session::Session(std::shared_ptr<const Context> context, SessionOptions options)
    : context_(std::move(context)), options_(std::move(options)) {}

Session::~Session() { SSL_free(ssl_); }

Result<std::unique_ptr<Session>> Session::create(std::shared_ptr<const Context> context,
                                                 SessionOptions options) {
  if (!context) return invalid("context: required");
  if (!options.on_plaintext) return invalid("on_plaintext: required");
  const bool is_client = context->role() == Role::client;
  if (!is_client && !options.server_name.empty()) {
    return invalid("server_name: only a client sends SNI");
  }
  if (!is_client && !options.verify_name.empty()) {
    return invalid("verify_name: only a client matches the server's name");
  }
  if (!context->verify_peer() && !options.verify_name.empty()) {
    return invalid("verify_name: requires a context with verify_peer");
  }
  if (!context->verify_peer() && options.peer_check) {
    return invalid("peer_check: requires a context with verify_peer");
  }
  if (!options.server_name.empty() && is_ip_address(options.server_name)) {
    return invalid("server_name: " + options.server_name +
                   " is an IP address; SNI carries DNS names only (use verify_name)");
  }
  if (!is_dns_name(options.server_name)) {
    return invalid(
        "server_name: not a DNS name (letters, digits, '-', '_' and '.', at most 253 bytes)");
  }

  std::unique_ptr<Session> session(new Session(std::move(context), std::move(options)));
  Session* s = session.get();
  ERR_clear_error();
  s->ssl_ = SSL_new(s->context_->ssl_ctx_);
  const BIO_METHOD* method = session_bio_method();
  BIO* bio = (s->ssl_ != nullptr && method != nullptr) ? BIO_new(method) : nullptr;
  if (bio == nullptr) {
    return invalid("cannot create the connection: " + internal::take_error_reason());
  }
  BIO_set_data(bio, s);
  BIO_set_init(bio, 1);
  SSL_set_bio(s->ssl_, bio, bio);
  SSL_set_app_data(s->ssl_, s);

  if (!is_client) {
    SSL_set_accept_state(s->ssl_);
    return session;
  }
  SSL_set_connect_state(s->ssl_);
  const std::string& server_name = s->options_.server_name;
  if (!server_name.empty() && SSL_set_tlsext_host_name(s->ssl_, server_name.c_str()) != 1) {
    return invalid("server_name: " + internal::take_error_reason());
  }
  const std::string& verify_name = s->options_.verify_name;
  if (!verify_name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(s->ssl_);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int set = is_ip_address(verify_name)
                  ? X509_VERIFY_PARAM_set1_ip_asc(param, verify_name.c_str())
                  : X509_VERIFY_PARAM_set1_host(param, verify_name.data(), verify_name.size());
    if (set != 1) return invalid("verify_name: " + internal::take_error_reason());
  }
  Status started = s->drive();  // writes the ClientHello
  if (!started.ok()) return std::move(started).error();
  return session;
}

Status Session::feed_input(const char* data, size_t len) {
  if (failed_) return error_;
  if (feeding_) return invalid("feed_input: called from inside a Session callback");
  if (peer_closed_) return ok_status();  // nothing is valid after close_notify
  feeding_ = true;
  input_ = data;
  input_size_ = len;
  Status status = drive();
  input_ = nullptr;
  input_size_ = 0;
  feeding_ = false;
  return status;
}

Status Session::feed_eof() {
  if (failed_) return error_;
  if (!handshake_done_) {
    return fail(make_tls_error(ErrorCode::truncated,
                               "tls handshake failed: connection closed before the handshake "
                               "completed"));
  }
  if (!peer_closed_) {
    return fail(make_tls_error(ErrorCode::truncated,
                               "tls read failed: connection closed without close_notify"));
  }
  return ok_status();
}

void Session::take_output(std::string& out) {
  out.clear();
  out.swap(output_);
}

Status Session::write(const char* data, size_t len) {
  if (failed_) return error_;
  if (close_requested_) {
    return make_tls_error(ErrorCode::closed, "tls write failed: close_notify already queued");
  }
  if (len == 0) return ok_status();
  if (!handshake_done_) {
    pending_plaintext_.append(data, len);
    return ok_status();
  }
  return encrypt(data, len);
}

Status Session::close_notify() {
  if (failed_) return error_;
  if (close_requested_) return ok_status();
  close_requested_ = true;
  // Before the handshake completes, complete_handshake() sends it.
  return handshake_done_ ? shutdown() : ok_status();
}

std::string_view Session::alpn() const {
  const uint8_t* data = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl_, &data, &len);
  return {reinterpret_cast<const char*>(data), len};
}

std::string_view Session::server_name() const {
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return name != nullptr ? name : "";
}

TlsVersion Session::version() const {
  return SSL_version(ssl_) == TLS1_2_VERSION ? TlsVersion::tls1_2 : TlsVersion::tls1_3;
}

std::string_view Session::cipher() const {
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_);
  return cipher != nullptr ? SSL_CIPHER_get_name(cipher) : "";
}

std::vector<std::string_view> Session::peer_certificate_chain() const {
  std::vector<std::string_view> chain;
  const STACK_OF(CRYPTO_BUFFER)* certs = SSL_get0_peer_certificates(ssl_);
  if (certs == nullptr) return chain;
  for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(certs); ++i) {
    const CRYPTO_BUFFER* cert = sk_CRYPTO_BUFFER_value(certs, i);
    chain.emplace_back(reinterpret_cast<const char*>(CRYPTO_BUFFER_data(cert)),
                       CRYPTO_BUFFER_len(cert));
  }
  return chain;
}

Result<std::string> Session::peer_spiffe_id() const {
  if (!has_peer_certificate_) {
    return make_tls_error(ErrorCode::peer_identity, "peer presented no certificate");
  }
  auto id = spiffe_id_from_uri_sans(peer_uri_sans_);
  if (!id.ok()) {
    return make_tls_error(ErrorCode::peer_identity, "peer certificate: " + id.error().message);
  }
  return id;
}

Status Session::drive() {
  if (!handshake_done_) {
    ERR_clear_error();
    int result = SSL_do_handshake(ssl_);
    if (result != 1) {
      if (SSL_get_error(ssl_, result) == SSL_ERROR_WANT_READ) return ok_status();
      return fail(error_from_ssl(result, "tls handshake failed: "));
    }
    Status completed = complete_handshake();
    if (!completed.ok()) return completed;
  }
  return read_plaintext();
}

Status Session::complete_handshake() {
  const auto& offered = context_->alpn_protocols();
  if (role() == Role::client && !offered.empty() && alpn().empty() &&
      context_->alpn_mismatch() == AlpnMismatch::fail) {
    SSL_send_fatal_alert(ssl_, SSL_AD_NO_APPLICATION_PROTOCOL);
    return fail(make_tls_error(ErrorCode::alpn,
                               "tls handshake failed: server selected no ALPN protocol (offered: " +
                                   join(offered) + ")"));
  }
  handshake_done_ = true;
  if (!pending_plaintext_.empty()) {
    std::string pending;
    pending.swap(pending_plaintext_);  // releases the buffer: it is needed only once
    Status written = encrypt(pending.data(), pending.size());
    if (!written.ok()) return written;
  }
  return close_requested_ ? shutdown() : ok_status();
}

Status Session::read_plaintext() {
  // On the stack: per-connection buffers would cost 16 KiB for every idle
  // connection, and a shared one would break if a handler feeds another
  // Session on the same thread.
  char buffer[kReadChunk];
  while (!peer_closed_) {
    ERR_clear_error();
    int n = SSL_read(ssl_, buffer, static_cast<int>(sizeof(buffer)));
    if (n > 0) {
      options_.on_plaintext(buffer, static_cast<size_t>(n));
      if (failed_) return error_;  // the handler's write() or close_notify() failed
      continue;
    }
    int error = SSL_get_error(ssl_, n);
    if (error == SSL_ERROR_WANT_READ) return ok_status();
    if (error == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      return ok_status();
    }
    return fail(error_from_ssl(n, "tls read failed: "));
  }
  return ok_status();
}

Status Session::encrypt(const char* data, size_t len) {
  while (len > 0) {
    int chunk = static_cast<int>(std::min<size_t>(len, INT_MAX));
    ERR_clear_error();
    int n = SSL_write(ssl_, data, chunk);
    if (n <= 0) return fail(error_from_ssl(n, "tls write failed: "));
    data += n;
    len -= static_cast<size_t>(n);
  }
  return ok_status();
}

Status Session::shutdown() {
  ERR_clear_error();
  int result = SSL_shutdown(ssl_);
  if (result < 0) return fail(error_from_ssl(result, "tls close failed: "));
  return ok_status();
}

Status Session::fail(Error error) {
  failed_ = true;
  error_ = std::move(error);
  return error_;
}

Error Session::error_from_ssl(int ssl_result, std::string_view phase) {
  std::string prefix(phase);
  if (has_callback_error_) {
    ERR_clear_error();
    return make_tls_error(error_code(callback_error_), prefix + callback_error_.message);
  }
  int ssl_error = SSL_get_error(ssl_, ssl_result);
  uint32_t e = ERR_peek_error();
  if (e == 0) {
    return make_tls_error(ErrorCode::protocol,
                          prefix + "unexpected SSL_get_error " + std::to_string(ssl_error));
  }
  int reason = ERR_GET_REASON(e);
  bool from_ssl = ERR_GET_LIB(e) == ERR_LIB_SSL;
  std::string reason_text = internal::take_error_reason();
  if (from_ssl && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    return make_tls_error(ErrorCode::peer_certificate,
                          prefix + "certificate verify failed: " +
                              X509_verify_cert_error_string(SSL_get_verify_result(ssl_)));
  }
  if (from_ssl && reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    return make_tls_error(ErrorCode::peer_certificate, prefix + reason_text);
  }
  if (from_ssl && reason >= SSL_AD_REASON_OFFSET) {
    return make_tls_error(ErrorCode::peer_alert, prefix + reason_text);
  }
  return make_tls_error(ErrorCode::protocol, prefix + reason_text);
}

void Session::set_callback_error(ErrorCode code, std::string message) {
  callback_error_ = make_tls_error(code, std::move(message));
  has_callback_error_ = true;
}

int internal::SessionCallbacks::bio_read(BIO* bio, char* out, int len) {
  auto* self = static_cast<Session*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (self->input_size_ == 0) {
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t n = std::min(self->input_size_, static_cast<size_t>(len));
  std::memcpy(out, self->input_, n);
  self->input_ += n;
  self->input_size_ -= n;
  return static_cast<int>(n);
}

int internal::SessionCallbacks::bio_write(BIO* bio, const char* data, int len) {
  auto* self = static_cast<Session*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  self->output_.append(data, static_cast<size_t>(len));
  return len;
}

int internal::SessionCallbacks::verify_certificate(X509_STORE_CTX* store, void*) {
  auto* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* self = static_cast<Session*>(SSL_get_app_data(ssl));
  X509* leaf = X509_STORE_CTX_get0_cert(store);
  if (leaf == nullptr) return 0;
  self->has_peer_certificate_ = true;
  auto sans = internal::read_subject_alt_names(leaf);
  if (sans.ok()) {
    self->peer_uri_sans_ = std::move(sans->uris);
    self->peer_dns_sans_ = std::move(sans->dns);
  }
  if (X509_verify_cert(store) != 1) return 0;
  // Without verify_peer BoringSSL ignores our verdict (and no checks exist).
  if (!self->context_->verify_peer()) return 1;
  if (!sans.ok()) {
    self->set_callback_error(ErrorCode::peer_certificate,
                             "peer certificate: " + sans.error().message);
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  const PeerCheck* checks[] = {&self->context_->peer_check(), &self->options_.peer_check};
  for (const PeerCheck* check : checks) {
    if (!*check) continue;
    Status verdict = (*check)(*self);
    if (!verdict.ok()) {
      self->set_callback_error(ErrorCode::peer_identity,
                               "peer identity rejected: " + verdict.error().message);
      X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
      return 0;
    }
  }
  return 1;
}

int internal::SessionCallbacks::select_alpn(SSL* ssl, const uint8_t** out, uint8_t* out_len,
                                            const uint8_t* in, unsigned in_len, void*) {
  auto* self = static_cast<Session*>(SSL_get_app_data(ssl));
  std::vector<std::string> client_offer;
  for (const auto& accepted : self->context_->alpn_protocols()) {
    CBS list;
    CBS_init(&list, in, in_len);
    CBS protocol;
    while (CBS_len(&list) > 0 && CBS_get_u8_length_prefixed(&list, &protocol)) {
      if (CBS_len(&protocol) == accepted.size() &&
          std::memcmp(CBS_data(&protocol), accepted.data(), accepted.size()) == 0) {
        *out = CBS_data(&protocol);
        *out_len = static_cast<uint8_t>(CBS_len(&protocol));
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  if (self->context_->alpn_mismatch() == AlpnMismatch::continue_without) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  CBS list;
  CBS_init(&list, in, in_len);
  CBS protocol;
  while (CBS_len(&list) > 0 && CBS_get_u8_length_prefixed(&list, &protocol)) {
    client_offer.emplace_back(reinterpret_cast<const char*>(CBS_data(&protocol)),
                              CBS_len(&protocol));
  }
  self->set_callback_error(ErrorCode::alpn, "no common ALPN protocol (client offered: " +
                                                join(client_offer) + "; accepted: " +
                                                join(self->context_->alpn_protocols()) + ")");
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

enum ssl_select_cert_result_t internal::SessionCallbacks::check_client_hello(
    const SSL_CLIENT_HELLO* hello) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (SSL_early_callback_ctx_extension_get(
          hello, TLSEXT_TYPE_application_layer_protocol_negotiation, &data, &len) == 1) {
    return ssl_select_cert_success;
  }
  auto* self = static_cast<Session*>(SSL_get_app_data(hello->ssl));
  self->set_callback_error(ErrorCode::alpn, "client offered no ALPN protocol (accepted: " +
                                                join(self->context_->alpn_protocols()) + ")");
  return ssl_select_cert_error;
}

}  // namespace trellis::tls
