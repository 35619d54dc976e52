// Test plumbing: Contexts from the test PKI and a client/server Session pair
// pumped through memory.
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "common/tls/context.h"
#include "common/tls/error.h"
#include "common/tls/session.h"
#include "tests/unit/common/tls/test_pki.h"

namespace trellis::tls::test {

inline ContextConfig server_config(const Leaf& leaf = pki().server) {
  ContextConfig c;
  c.role = Role::server;
  c.certificate_chain_pem = leaf.chain_pem;
  c.private_key_pem = leaf.key_pem;
  c.trust_bundle_pem = pki().root.cert_pem();
  c.alpn_protocols = {"trellis-h2"};
  return c;
}

inline ContextConfig client_config(const Leaf& leaf = pki().client) {
  ContextConfig c;
  c.role = Role::client;
  c.certificate_chain_pem = leaf.chain_pem;
  c.private_key_pem = leaf.key_pem;
  c.trust_bundle_pem = pki().root.cert_pem();
  c.alpn_protocols = {"trellis-h2"};
  return c;
}

inline std::shared_ptr<const Context> make_context(ContextConfig config) {
  auto context = Context::create(std::move(config));
  if (!context.ok()) FAIL("Context::create: ", context.error().message);
  return std::move(context).value();
}

// One side of a connection: its Session, the plaintext it received and its
// first error.
struct Side {
  std::unique_ptr<Session> session;
  std::string received;
  std::optional<Error> error;

  void note(const Status& status) {
    if (!status.ok() && !error) error = status.error();
  }
  std::string error_message() const { return error ? error->message : "(none)"; }
  ErrorCode error_code() const { return error ? tls::error_code(*error) : ErrorCode{}; }
};

class Pair {
 public:
  Pair(std::shared_ptr<const Context> client_context, std::shared_ptr<const Context> server_context,
       SessionOptions client_options = {}, SessionOptions server_options = {}) {
    client_options.on_plaintext = [this](const char* d, size_t n) { client.received.append(d, n); };
    server_options.on_plaintext = [this](const char* d, size_t n) { server.received.append(d, n); };
    auto s = Session::create(std::move(server_context), std::move(server_options));
    if (!s.ok()) FAIL("server Session::create: ", s.error().message);
    server.session = std::move(s).value();
    auto c = Session::create(std::move(client_context), std::move(client_options));
    if (!c.ok()) FAIL("client Session::create: ", c.error().message);
    client.session = std::move(c).value();
  }

  // Moves ciphertext both ways until neither side has any left, feeding it
  // in pieces of at most `chunk` bytes. Keeps going after errors so that
  // alerts reach the other side.
  void pump(size_t chunk = SIZE_MAX) {
    for (int round = 0; round < 1000; ++round) {
      bool moved = transfer(client, server, chunk);
      moved = transfer(server, client, chunk) || moved;
      if (!moved) return;
    }
    FAIL("pump did not settle");
  }

  Side client;
  Side server;

 private:
  bool transfer(Side& from, Side& to, size_t chunk) {
    if (!from.session->has_output()) return false;
    from.session->take_output(buffer_);
    for (size_t at = 0; at < buffer_.size(); at += chunk) {
      size_t n = std::min(chunk, buffer_.size() - at);
      to.note(to.session->feed_input(buffer_.data() + at, n));
    }
    return true;
  }

  std::string buffer_;
};

}  // namespace trellis::tls::test
