// One TLS connection, sans-IO: the caller moves ciphertext between the Session
// and its socket, the Session never touches a file descriptor.
//
//   network bytes ──feed_input()──► Session ──on_plaintext(data, len)──► app
//   network  ◄──take_output()────── Session ◄──write(plaintext)───────── app
//
// feed_input() drives the handshake and decrypts; anything the Session has to
// send (handshake flights, alerts, records for write()) accumulates until
// take_output(). After every call the caller should drain take_output() and
// send it, even after an error: it may hold the alert that tells the peer why.
//
// Threading: a Session belongs to one thread (its connection's worker). Its
// Context may be shared. Callbacks (on_plaintext, PeerChecks) run
// synchronously inside feed_input(); they may call write() and close_notify()
// but must not destroy the Session or call feed_input() on it.
//
// A fatal error is sticky: every later call returns it again. (A write after
// close_notify is refused with ErrorCode::closed but is not fatal.)
#pragma once

#include <openssl/base.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "common/tls/context.h"
#include "common/tls/error.h"

namespace trellis::tls {

namespace internal {
struct SessionCallbacks;
}

// Receives decrypted application data. `data` is valid only during the call.
using PlaintextHandler = std::function<void(const char* data, size_t len)>;

struct SessionOptions {
  // Client only: the SNI host name to send (a DNS name, not an IP address).
  std::string server_name;
  // Client only, with verify_peer: a DNS name or IP address the server's
  // certificate must match (e.g. the kube-apiserver host). Empty: the chain
  // is verified but not matched to a name, as between sidecars, whose
  // identity is their SPIFFE ID (see peer_check).
  std::string verify_name;
  // Runs after the Context's own check, for this connection only (e.g.
  // expect_spiffe_id(endpoint identity)). Requires verify_peer.
  PeerCheck peer_check;
  // Required.
  PlaintextHandler on_plaintext;
};

class Session {
 public:
  // A client Session has its ClientHello pending in take_output() at once.
  static Result<std::unique_ptr<Session>> create(std::shared_ptr<const Context> context,
                                                 SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Ciphertext from the network, any split. Consumed completely (nothing to
  // keep alive after the call); decrypted data goes to on_plaintext.
  Status feed_input(const char* data, size_t len);
  // The transport reached end of stream. An error (ErrorCode::truncated) if
  // the handshake had not finished or the peer sent no close_notify; callers
  // that tolerate truncation (HTTP/2 has its own framing) may ignore that.
  Status feed_eof();

  bool has_output() const { return !output_.empty(); }
  size_t output_size() const { return output_.size(); }
  // Moves the pending ciphertext into `out`, replacing its content. The two
  // strings swap storage, so no bytes are copied and both capacities are
  // reused: hand `out` to the socket write and pass it back once written.
  void take_output(std::string& out);

  // Encrypts `len` bytes into the output. Before the handshake completes the
  // plaintext is buffered (copied) and sent right after it.
  Status write(const char* data, size_t len);
  Status write(std::string_view data) { return write(data.data(), data.size()); }
  // Queues a close_notify alert (after any buffered plaintext). Later writes
  // fail with ErrorCode::closed; reading goes on until the peer's close_notify.
  Status close_notify();

  bool is_handshake_done() const { return handshake_done_; }
  // The peer sent close_notify: no more plaintext will arrive.
  bool peer_closed() const { return peer_closed_; }
  bool failed() const { return failed_; }
  Role role() const { return context_->role(); }

  // Connection facts, meaningful once is_handshake_done(). Views stay valid
  // while the Session lives.
  std::string_view alpn() const;         // empty: no protocol negotiated
  std::string_view server_name() const;  // SNI: sent (client) or received (server)
  TlsVersion version() const;
  std::string_view cipher() const;  // e.g. "TLS_AES_128_GCM_SHA256"
  // The peer's certificates as DER, leaf first, as the peer sent them.
  std::vector<std::string_view> peer_certificate_chain() const;
  // SANs of the peer's leaf; already set when a PeerCheck runs.
  const std::vector<std::string>& peer_uri_sans() const { return peer_uri_sans_; }
  const std::vector<std::string>& peer_dns_sans() const { return peer_dns_sans_; }
  // The single spiffe:// URI SAN of the peer's leaf certificate.
  Result<std::string> peer_spiffe_id() const;

 private:
  Session(std::shared_ptr<const Context> context, SessionOptions options);

  Status drive();
  Status complete_handshake();
  Status read_plaintext();
  Status encrypt(const char* data, size_t len);
  Status shutdown();
  Status fail(Error error);
  Error error_from_ssl(int ssl_result, std::string_view phase);

  void set_callback_error(ErrorCode code, std::string message);
  // BoringSSL's callbacks, which find the Session through SSL app data.
  friend struct internal::SessionCallbacks;

  std::shared_ptr<const Context> context_;
  SessionOptions options_;
  SSL* ssl_ = nullptr;  // owned

  // The ciphertext being fed: BoringSSL reads it straight from the caller's
  // buffer, with no intermediate copy.
  const char* input_ = nullptr;
  size_t input_size_ = 0;
  std::string output_;
  std::string pending_plaintext_;  // written before the handshake completed

  std::vector<std::string> peer_uri_sans_;
  std::vector<std::string> peer_dns_sans_;
  bool has_peer_certificate_ = false;
  // Set by a callback that aborts the handshake, to report our reason rather
  // than BoringSSL's generic one.
  Error callback_error_;
  bool has_callback_error_ = false;

  Error error_;
  bool feeding_ = false;
  bool failed_ = false;
  bool handshake_done_ = false;
  bool close_requested_ = false;
  bool peer_closed_ = false;
};

}  // namespace trellis::tls
