// A TLS context: what one side of many connections is and trusts. Built once
// from a ContextConfig, immutable afterwards and shared across worker threads
// as std::shared_ptr<const Context>. Certificate rotation builds a new Context
// and swaps the pointer: new connections use it, live Sessions keep theirs.
#pragma once

#include <openssl/base.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace trellis::tls {

class Session;

enum class Role { client, server };
enum class TlsVersion { tls1_2, tls1_3 };

std::string_view version_name(TlsVersion version);  // "TLSv1.2", "TLSv1.3"

// What to do when the peers share no ALPN protocol (or the peer offers or
// selects none): abort the handshake, or carry on with no ALPN protocol.
enum class AlpnMismatch { fail, continue_without };

// An extra check of a peer whose certificate chain has already verified. It
// runs inside the handshake; a failing Status aborts it with
// "tls handshake failed: peer identity rejected: <message>". It may read the
// Session's peer_uri_sans(), peer_spiffe_id(), server_name() and alpn().
// A Context's check is shared by every thread using the Context, so it is
// called concurrently and must not mutate unsynchronized state.
using PeerCheck = std::function<Status(const Session& session)>;

struct ContextConfig {
  Role role = Role::client;
  // Leaf first, then intermediates. Required for servers; for clients only
  // when the server asks for a client certificate (mTLS).
  std::string certificate_chain_pem;
  std::string private_key_pem;  // PKCS#8, SEC1 (EC) or PKCS#1 (RSA); not encrypted
  // Roots the peer must chain to; several are allowed (trust-anchor rotation).
  std::string trust_bundle_pem;
  // Server: require a client certificate and verify it (mTLS). Client: verify
  // the server's certificate (turn off only for "insecure-skip-tls-verify").
  bool verify_peer = true;
  // Client: offered, in order. Server: accepted, in preference order (the
  // server picks its most preferred protocol the client offers).
  std::vector<std::string> alpn_protocols;
  AlpnMismatch alpn_mismatch = AlpnMismatch::fail;
  TlsVersion min_version = TlsVersion::tls1_3;
  TlsVersion max_version = TlsVersion::tls1_3;
  // Runs for every Session of this Context (e.g. expect_trust_domain), before
  // the Session's own check. Requires verify_peer.
  PeerCheck peer_check;
};

class Context {
 public:
  // Validates `config` and parses its PEM inputs; every problem is an
  // ErrorCode::invalid_argument error naming the field, e.g.
  // "private_key_pem: does not match the certificate: KEY_VALUES_MISMATCH".
  static Result<std::shared_ptr<const Context>> create(ContextConfig config);

  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Role role() const { return role_; }
  bool verify_peer() const { return verify_peer_; }
  const std::vector<std::string>& alpn_protocols() const { return alpn_protocols_; }
  AlpnMismatch alpn_mismatch() const { return alpn_mismatch_; }
  const PeerCheck& peer_check() const { return peer_check_; }

 private:
  friend class Session;
  Context() = default;

  SSL_CTX* ssl_ctx_ = nullptr;  // owned; SSL_CTX is safe to share between threads
  Role role_ = Role::client;
  bool verify_peer_ = true;
  std::vector<std::string> alpn_protocols_;
  AlpnMismatch alpn_mismatch_ = AlpnMismatch::fail;
  PeerCheck peer_check_;
};

// Ready-made PeerChecks. The Session's message says what was expected and
// what the peer presented.
PeerCheck expect_spiffe_id(std::string spiffe_id);
PeerCheck expect_trust_domain(std::string trust_domain);

}  // namespace trellis::tls
