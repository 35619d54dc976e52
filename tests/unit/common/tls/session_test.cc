#include "common/tls/session.h"

#include <doctest/doctest.h>

#include <string>

#include "common/tls/certificate.h"
#include "tests/unit/common/tls/harness.h"

using namespace trellis;
using namespace trellis::tls;
using namespace trellis::tls::test;

namespace {

constexpr char kClientId[] = "spiffe://cluster.local/ns/shop/sa/default";
constexpr char kServerId[] = "spiffe://cluster.local/ns/shop/sa/echo";

SessionOptions with_sni(const std::string& name) {
  SessionOptions options;
  options.server_name = name;
  return options;
}

// A deterministic pattern that makes misordered or dropped bytes visible.
std::string pattern(size_t size, char salt) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 31 + i / 7 + salt) & 0xff);
  return s;
}

std::unique_ptr<Session> lone_server(std::shared_ptr<const Context> context) {
  SessionOptions options;
  options.on_plaintext = [](const char*, size_t) {};
  auto session = Session::create(std::move(context), std::move(options));
  REQUIRE(session.ok());
  return std::move(session).value();
}

}  // namespace

TEST_CASE("mTLS handshake, data both ways, ALPN, SNI and SPIFFE IDs on both sides") {
  Pair p(make_context(client_config()), make_context(server_config()),
         with_sni("echo.shop.svc.cluster.local"));
  Session& client = *p.client.session;
  Session& server = *p.server.session;
  CHECK(client.has_output());  // the ClientHello, before any input
  CHECK_FALSE(client.is_handshake_done());
  p.pump();
  REQUIRE_MESSAGE(!p.client.error, p.client.error_message());
  REQUIRE_MESSAGE(!p.server.error, p.server.error_message());
  REQUIRE(client.is_handshake_done());
  REQUIRE(server.is_handshake_done());

  CHECK(client.alpn() == "trellis-h2");
  CHECK(server.alpn() == "trellis-h2");
  CHECK(server.server_name() == "echo.shop.svc.cluster.local");
  CHECK(client.server_name() == "echo.shop.svc.cluster.local");
  CHECK(client.version() == TlsVersion::tls1_3);
  CHECK(server.version() == TlsVersion::tls1_3);
  CHECK(version_name(server.version()) == "TLSv1.3");
  CHECK(client.cipher() == server.cipher());
  CHECK(client.cipher().rfind("TLS_", 0) == 0);

  CHECK(client.peer_uri_sans() == std::vector<std::string>{kServerId});
  CHECK(client.peer_dns_sans() == std::vector<std::string>{"echo.shop.svc.cluster.local"});
  CHECK(server.peer_uri_sans() == std::vector<std::string>{kClientId});
  auto server_id = client.peer_spiffe_id();
  REQUIRE(server_id.ok());
  CHECK(*server_id == kServerId);
  auto client_id = server.peer_spiffe_id();
  REQUIRE(client_id.ok());
  CHECK(*client_id == kClientId);

  // Each side sent its leaf and the intermediate, not the root.
  auto chain = server.peer_certificate_chain();
  REQUIRE(chain.size() == 2);
  CHECK(chain[0] == pki().client.cert_der);
  CHECK(client.peer_certificate_chain().size() == 2);

  REQUIRE(client.write("GET / HTTP/1.1\r\n\r\n").ok());
  REQUIRE(server.write(std::string_view("HTTP/1.1 204 No Content\r\n\r\n")).ok());
  p.pump();
  CHECK(p.server.received == "GET / HTTP/1.1\r\n\r\n");
  CHECK(p.client.received == "HTTP/1.1 204 No Content\r\n\r\n");

  REQUIRE(client.close_notify().ok());
  p.pump();
  CHECK(server.peer_closed());
  CHECK_FALSE(client.peer_closed());
  // Half-closed: the server can still answer.
  REQUIRE(server.write("bye").ok());
  REQUIRE(server.close_notify().ok());
  p.pump();
  CHECK(p.client.received.substr(p.client.received.size() - 3) == "bye");
  CHECK(client.peer_closed());
  CHECK(client.feed_eof().ok());
  CHECK(server.feed_eof().ok());
  CHECK_FALSE(p.client.error);
  CHECK_FALSE(p.server.error);
}

TEST_CASE("writes before the handshake are buffered, then sent; so is an early close_notify") {
  Pair p(make_context(client_config()), make_context(server_config()));
  REQUIRE(p.client.session->write("early request").ok());
  REQUIRE(p.client.session->close_notify().ok());
  REQUIRE(p.client.session->close_notify().ok());  // idempotent
  auto late = p.client.session->write("x");
  REQUIRE_FALSE(late.ok());
  CHECK(late.error().message == "tls write failed: close_notify already queued");
  CHECK(error_code(late.error()) == ErrorCode::closed);
  p.pump();
  CHECK_FALSE(p.server.error);
  CHECK(p.server.received == "early request");
  CHECK(p.server.session->peer_closed());
}

TEST_CASE("the plaintext handler may answer from inside feed_input") {
  auto client_context = make_context(client_config());
  auto server_context = make_context(server_config());
  std::string client_got;
  Session* server_ptr = nullptr;
  SessionOptions server_options;
  server_options.on_plaintext = [&server_ptr](const char* d, size_t n) {
    CHECK(server_ptr->write(std::string("echo:") + std::string(d, n)).ok());
  };
  SessionOptions client_options;
  client_options.on_plaintext = [&client_got](const char* d, size_t n) { client_got.append(d, n); };
  auto server = Session::create(server_context, std::move(server_options));
  auto client = Session::create(client_context, std::move(client_options));
  REQUIRE(server.ok());
  REQUIRE(client.ok());
  server_ptr = server->get();
  REQUIRE((*client)->write("ping").ok());
  std::string wire;
  for (int i = 0; i < 10; ++i) {
    (*client)->take_output(wire);
    REQUIRE((*server)->feed_input(wire.data(), wire.size()).ok());
    (*server)->take_output(wire);
    REQUIRE((*client)->feed_input(wire.data(), wire.size()).ok());
  }
  CHECK(client_got == "echo:ping");
}

TEST_CASE("1 MiB each way crosses record and feed boundaries intact") {
  Pair p(make_context(client_config()), make_context(server_config()));
  p.pump();
  REQUIRE(p.client.session->is_handshake_done());
  const std::string up = pattern(1 << 20, 1);
  const std::string down = pattern(1 << 20, 2);
  // Several writes of odd sizes, delivered in pieces that split records.
  for (size_t at = 0; at < up.size(); at += 100003) {
    REQUIRE(p.client.session->write(up.data() + at, std::min<size_t>(100003, up.size() - at)).ok());
  }
  REQUIRE(p.server.session->write(down).ok());
  p.pump(7919);
  CHECK_FALSE(p.client.error);
  CHECK_FALSE(p.server.error);
  CHECK(p.server.received.size() == up.size());
  CHECK(p.server.received == up);
  CHECK(p.client.received.size() == down.size());
  CHECK(p.client.received == down);

  // And byte by byte, the worst split there is.
  REQUIRE(p.client.session->write(up.substr(0, 40000)).ok());
  p.pump(1);
  CHECK(p.server.received.size() == up.size() + 40000);
  CHECK(p.server.received.compare(up.size(), 40000, up, 0, 40000) == 0);
}

TEST_CASE("take_output swaps buffers instead of copying") {
  Pair p(make_context(client_config()), make_context(server_config()));
  p.pump();
  std::string out = "stale";
  REQUIRE(p.client.session->write(pattern(50000, 3)).ok());
  size_t pending = p.client.session->output_size();
  CHECK(pending > 50000);
  p.client.session->take_output(out);
  CHECK(out.size() == pending);
  CHECK_FALSE(p.client.session->has_output());
  p.client.session->take_output(out);  // nothing pending: `out` is emptied
  CHECK(out.empty());
}

TEST_CASE("a server requiring client certificates rejects a client without one") {
  ContextConfig anonymous = client_config();
  anonymous.certificate_chain_pem.clear();
  anonymous.private_key_pem.clear();
  Pair p(make_context(anonymous), make_context(server_config()));
  p.pump();
  CHECK_FALSE(p.server.session->is_handshake_done());
  CHECK(p.server.error_message() == "tls handshake failed: PEER_DID_NOT_RETURN_A_CERTIFICATE");
  CHECK(p.server.error_code() == ErrorCode::peer_certificate);
  // In TLS 1.3 the client finishes first and learns of the rejection as an
  // alert on its next read.
  CHECK(p.client.error_message() == "tls read failed: TLSV1_ALERT_CERTIFICATE_REQUIRED");
  CHECK(p.client.error_code() == ErrorCode::peer_alert);
}

TEST_CASE("a server that does not verify clients asks for no certificate") {
  ContextConfig open = server_config();
  open.verify_peer = false;
  Pair p(make_context(client_config()), make_context(open));
  p.pump();
  REQUIRE(p.server.session->is_handshake_done());
  CHECK(p.server.session->peer_certificate_chain().empty());
  auto id = p.server.session->peer_spiffe_id();
  REQUIRE_FALSE(id.ok());
  CHECK(id.error().message == "peer presented no certificate");
}

TEST_CASE("certificates from an untrusted CA are rejected, either way round") {
  {
    Pair p(make_context(client_config(pki().unrelated)), make_context(server_config()));
    p.pump();
    CHECK(p.server.error_message() ==
          "tls handshake failed: certificate verify failed: "
          "unable to get local issuer certificate");
    CHECK(p.server.error_code() == ErrorCode::peer_certificate);
    CHECK(p.client.error_message() == "tls read failed: TLSV1_ALERT_UNKNOWN_CA");
  }
  {
    Pair p(make_context(client_config()), make_context(server_config(pki().unrelated)));
    p.pump();
    CHECK(p.client.error_message() ==
          "tls handshake failed: certificate verify failed: "
          "unable to get local issuer certificate");
    CHECK(p.client.error_code() == ErrorCode::peer_certificate);
    CHECK(p.server.error_message() == "tls handshake failed: TLSV1_ALERT_UNKNOWN_CA");
    CHECK(p.server.error_code() == ErrorCode::peer_alert);
    CHECK_FALSE(p.client.session->is_handshake_done());
  }
}

TEST_CASE("an expired certificate is rejected") {
  Pair p(make_context(client_config(pki().expired)), make_context(server_config()));
  p.pump();
  CHECK(p.server.error_message() ==
        "tls handshake failed: certificate verify failed: certificate has expired");
  CHECK(p.server.error_code() == ErrorCode::peer_certificate);
  CHECK(p.client.error_message() == "tls read failed: SSLV3_ALERT_CERTIFICATE_EXPIRED");

  Pair q(make_context(client_config()), make_context(server_config(pki().expired)));
  q.pump();
  CHECK(q.client.error_message() ==
        "tls handshake failed: certificate verify failed: certificate has expired");
}

TEST_CASE("a client without verification connects to any server and still sees its SANs") {
  ContextConfig insecure = client_config();
  insecure.verify_peer = false;
  insecure.trust_bundle_pem.clear();
  ContextConfig open_server = server_config(pki().unrelated);
  open_server.verify_peer = false;
  Pair p(make_context(insecure), make_context(open_server));
  p.pump();
  REQUIRE_MESSAGE(p.client.session->is_handshake_done(), p.client.error_message());
  CHECK(p.client.session->peer_uri_sans() == std::vector<std::string>{kClientId});
}

TEST_CASE("a TLS 1.2-only client is refused by a TLS 1.3-only server") {
  ContextConfig old = client_config();
  old.min_version = TlsVersion::tls1_2;
  old.max_version = TlsVersion::tls1_2;
  Pair p(make_context(old), make_context(server_config()));
  p.pump();
  CHECK(p.server.error_message() == "tls handshake failed: UNSUPPORTED_PROTOCOL");
  CHECK(p.server.error_code() == ErrorCode::protocol);
  CHECK(p.client.error_message() == "tls handshake failed: TLSV1_ALERT_PROTOCOL_VERSION");
  CHECK(p.client.error_code() == ErrorCode::peer_alert);
}

TEST_CASE("TLS 1.2 works where both sides allow it (kube-apiserver, webhook callers)") {
  ContextConfig old = client_config();
  old.min_version = TlsVersion::tls1_2;
  old.max_version = TlsVersion::tls1_2;
  ContextConfig server = server_config();
  server.min_version = TlsVersion::tls1_2;
  Pair p(make_context(old), make_context(server));
  p.pump();
  REQUIRE_MESSAGE(p.server.session->is_handshake_done(), p.server.error_message());
  CHECK(p.server.session->version() == TlsVersion::tls1_2);
  CHECK(p.client.session->cipher() == "ECDHE-ECDSA-AES128-GCM-SHA256");
  CHECK(p.server.session->alpn() == "trellis-h2");
  auto id = p.client.session->peer_spiffe_id();
  REQUIRE(id.ok());
  CHECK(*id == kServerId);
  REQUIRE(p.client.session->write("over 1.2").ok());
  p.pump();
  CHECK(p.server.received == "over 1.2");
}

TEST_CASE("ALPN: the server picks its preferred protocol among the client's") {
  ContextConfig client = client_config();
  client.alpn_protocols = {"h2", "http/1.1", "trellis-h2"};
  ContextConfig server = server_config();
  server.alpn_protocols = {"trellis-h2", "h2"};
  Pair p(make_context(client), make_context(server));
  p.pump();
  CHECK(p.client.session->alpn() == "trellis-h2");
}

TEST_CASE("ALPN mismatch under the fail policy aborts the handshake") {
  SUBCASE("no common protocol") {
    ContextConfig client = client_config();
    client.alpn_protocols = {"h2", "http/1.1"};
    Pair p(make_context(client), make_context(server_config()));
    p.pump();
    CHECK(p.server.error_message() ==
          "tls handshake failed: no common ALPN protocol (client offered: h2, http/1.1; accepted: "
          "trellis-h2)");
    CHECK(p.server.error_code() == ErrorCode::alpn);
    CHECK(p.client.error_message() == "tls handshake failed: TLSV1_ALERT_NO_APPLICATION_PROTOCOL");
    CHECK(p.client.error_code() == ErrorCode::peer_alert);
  }
  SUBCASE("the client offers none") {
    ContextConfig client = client_config();
    client.alpn_protocols.clear();
    Pair p(make_context(client), make_context(server_config()));
    p.pump();
    CHECK(p.server.error_message() ==
          "tls handshake failed: client offered no ALPN protocol (accepted: trellis-h2)");
    CHECK(p.server.error_code() == ErrorCode::alpn);
    CHECK(p.client.error_message() == "tls handshake failed: SSLV3_ALERT_HANDSHAKE_FAILURE");
  }
  SUBCASE("the server selects none") {
    ContextConfig server = server_config();
    server.alpn_protocols.clear();
    Pair p(make_context(client_config()), make_context(server));
    p.pump();
    CHECK(p.client.error_message() ==
          "tls handshake failed: server selected no ALPN protocol (offered: trellis-h2)");
    CHECK(p.client.error_code() == ErrorCode::alpn);
    CHECK_FALSE(p.client.session->is_handshake_done());
    CHECK(p.server.error_message() == "tls read failed: TLSV1_ALERT_NO_APPLICATION_PROTOCOL");
  }
}

TEST_CASE("ALPN mismatch under continue_without connects with no protocol") {
  SUBCASE("server side") {
    ContextConfig client = client_config();
    client.alpn_protocols = {"h2"};
    client.alpn_mismatch = AlpnMismatch::continue_without;
    ContextConfig server = server_config();
    server.alpn_mismatch = AlpnMismatch::continue_without;
    Pair p(make_context(client), make_context(server));
    p.pump();
    REQUIRE_MESSAGE(p.server.session->is_handshake_done(), p.server.error_message());
    REQUIRE_MESSAGE(p.client.session->is_handshake_done(), p.client.error_message());
    CHECK(p.server.session->alpn().empty());
    CHECK(p.client.session->alpn().empty());
  }
  SUBCASE("client offering none") {
    ContextConfig client = client_config();
    client.alpn_protocols.clear();
    ContextConfig server = server_config();
    server.alpn_mismatch = AlpnMismatch::continue_without;
    Pair p(make_context(client), make_context(server));
    p.pump();
    REQUIRE_MESSAGE(p.server.session->is_handshake_done(), p.server.error_message());
    CHECK(p.server.session->alpn().empty());
  }
}

TEST_CASE("a trust bundle of two roots accepts leaves of both (rotation)") {
  const std::string bundle = pki().root.cert_pem() + pki().other_root.cert_pem();
  ContextConfig server = server_config();
  server.trust_bundle_pem = bundle;
  auto server_context = make_context(server);
  for (const Leaf* leaf : {&pki().client, &pki().unrelated}) {
    ContextConfig client = client_config(*leaf);
    client.trust_bundle_pem = bundle;
    Pair p(make_context(client), server_context);
    p.pump();
    CHECK_MESSAGE(p.server.session->is_handshake_done(), p.server.error_message());
    CHECK_MESSAGE(p.client.session->is_handshake_done(), p.client.error_message());
    CHECK(p.server.session->peer_uri_sans() == std::vector<std::string>{kClientId});
  }
  // Each old-bundle peer still rejects the new root's leaves.
  Pair p(make_context(client_config(pki().unrelated)), make_context(server_config()));
  p.pump();
  CHECK(p.server.error_code() == ErrorCode::peer_certificate);
}

TEST_CASE("bytes that are not a ClientHello fail cleanly as a protocol error") {
  auto context = make_context(server_config());
  struct Case {
    std::string input;
    std::string message;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nHost: echo\r\n\r\n", "tls handshake failed: HTTP_REQUEST"},
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "tls handshake failed: WRONG_VERSION_NUMBER"},
      {std::string("\x00\x01\x02\x03garbage-garbage", 19),
       "tls handshake failed: WRONG_VERSION_NUMBER"},
      // A handshake record header announcing an oversized message.
      {std::string("\x16\x03\x01\x00\x05hello", 10),
       "tls handshake failed: EXCESSIVE_MESSAGE_SIZE"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.input);
    auto server = lone_server(context);
    auto status = server->feed_input(c.input.data(), c.input.size());
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().message == c.message);
    CHECK(error_code(status.error()) == ErrorCode::protocol);
    CHECK(server->failed());
    // Sticky: more input gets the same answer, and nothing crashes.
    auto again = server->feed_input(c.input.data(), c.input.size());
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().message == c.message);
    CHECK(server->write("x").error().message == c.message);
  }
}

TEST_CASE("a connection cut during the handshake reports truncation, not a hang") {
  Pair p(make_context(client_config()), make_context(server_config()));
  std::string hello;
  p.client.session->take_output(hello);
  REQUIRE(p.server.session->feed_input(hello.data(), hello.size()).ok());
  std::string flight;
  p.server.session->take_output(flight);
  REQUIRE(flight.size() > 100);
  // Half of the server's flight arrives, then the connection ends.
  REQUIRE(p.client.session->feed_input(flight.data(), flight.size() / 2).ok());
  CHECK_FALSE(p.client.session->is_handshake_done());
  auto eof = p.client.session->feed_eof();
  REQUIRE_FALSE(eof.ok());
  CHECK(eof.error().message ==
        "tls handshake failed: connection closed before the handshake completed");
  CHECK(error_code(eof.error()) == ErrorCode::truncated);
  auto server_eof = p.server.session->feed_eof();
  REQUIRE_FALSE(server_eof.ok());
  CHECK(error_code(server_eof.error()) == ErrorCode::truncated);
}

TEST_CASE("end of stream without close_notify after the handshake is truncation") {
  Pair p(make_context(client_config()), make_context(server_config()));
  p.pump();
  REQUIRE(p.server.session->is_handshake_done());
  auto eof = p.server.session->feed_eof();
  REQUIRE_FALSE(eof.ok());
  CHECK(eof.error().message == "tls read failed: connection closed without close_notify");
  CHECK(error_code(eof.error()) == ErrorCode::truncated);
}

TEST_CASE("a tampered record after the handshake is a protocol error") {
  Pair p(make_context(client_config()), make_context(server_config()));
  p.pump();
  REQUIRE(p.client.session->write("hello").ok());
  std::string record;
  p.client.session->take_output(record);
  record[record.size() - 3] ^= 1;
  auto status = p.server.session->feed_input(record.data(), record.size());
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().message == "tls read failed: BAD_DECRYPT");
  CHECK(error_code(status.error()) == ErrorCode::protocol);
  CHECK(p.server.received.empty());
  CHECK(p.server.session->has_output());  // the alert for the client
}

TEST_CASE("the caller's identity check can refuse a verified peer") {
  SUBCASE("per session: the endpoint's expected SPIFFE ID") {
    SessionOptions options;
    options.peer_check = expect_spiffe_id("spiffe://cluster.local/ns/shop/sa/other");
    Pair p(make_context(client_config()), make_context(server_config()), std::move(options));
    p.pump();
    CHECK(p.client.error_message() ==
          "tls handshake failed: peer identity rejected: expected "
          "spiffe://cluster.local/ns/shop/sa/other, got spiffe://cluster.local/ns/shop/sa/echo");
    CHECK(p.client.error_code() == ErrorCode::peer_identity);
    CHECK(p.server.error_code() == ErrorCode::peer_alert);
  }
  SUBCASE("per session: the expected SPIFFE ID matches") {
    SessionOptions options;
    options.peer_check = expect_spiffe_id(kServerId);
    Pair p(make_context(client_config()), make_context(server_config()), std::move(options));
    p.pump();
    CHECK_MESSAGE(p.client.session->is_handshake_done(), p.client.error_message());
  }
  SUBCASE("per context: the trust domain") {
    Leaf foreign = pki().intermediate.issue(
        {"foreign", {"spiffe://other.example/ns/shop/sa/default"}, {}, {}});
    ContextConfig server = server_config();
    server.peer_check = expect_trust_domain("cluster.local");
    auto server_context = make_context(server);
    Pair bad(make_context(client_config(foreign)), server_context);
    bad.pump();
    CHECK(bad.server.error_message() ==
          "tls handshake failed: peer identity rejected: "
          "spiffe://other.example/ns/shop/sa/default is not in trust domain cluster.local");
    CHECK(bad.server.error_code() == ErrorCode::peer_identity);
    Pair good(make_context(client_config()), server_context);
    good.pump();
    CHECK_MESSAGE(good.server.session->is_handshake_done(), good.server.error_message());
  }
  SUBCASE("a peer without a SPIFFE ID") {
    Leaf dns_only = pki().intermediate.issue({"web", {}, {"web.example"}, {}});
    ContextConfig server = server_config();
    server.peer_check = expect_trust_domain("cluster.local");
    Pair p(make_context(client_config(dns_only)), make_context(server));
    p.pump();
    CHECK(p.server.error_message() ==
          "tls handshake failed: peer identity rejected: expected trust domain cluster.local; "
          "peer certificate: no spiffe:// URI SAN");
  }
  SUBCASE("a custom check sees the connection") {
    ContextConfig server = server_config();
    std::string seen;
    server.peer_check = [&seen](const Session& session) -> Status {
      seen = std::string(session.alpn()) + " " + std::string(session.server_name()) + " " +
             session.peer_uri_sans().at(0);
      return make_error("namespace shop is not allowed here");
    };
    Pair p(make_context(client_config()), make_context(server), with_sni("echo.shop"));
    p.pump();
    CHECK(seen == "trellis-h2 echo.shop spiffe://cluster.local/ns/shop/sa/default");
    CHECK(p.server.error_message() ==
          "tls handshake failed: peer identity rejected: namespace shop is not allowed here");
    CHECK(p.server.error_code() == ErrorCode::peer_identity);
  }
}

TEST_CASE("peer_spiffe_id wants exactly one spiffe:// URI SAN") {
  Leaf two = pki().intermediate.issue(
      {"two", {"spiffe://cluster.local/ns/a/sa/x", "spiffe://cluster.local/ns/b/sa/y"}, {}, {}});
  Pair p(make_context(client_config(two)), make_context(server_config()));
  p.pump();
  REQUIRE(p.server.session->is_handshake_done());
  CHECK(p.server.session->peer_uri_sans().size() == 2);
  auto id = p.server.session->peer_spiffe_id();
  REQUIRE_FALSE(id.ok());
  CHECK(id.error().message == "peer certificate: 2 spiffe:// URI SANs, expected exactly one");
}

TEST_CASE("verify_name matches the server certificate's DNS or IP SANs") {
  auto server_context = make_context(server_config());
  auto client_context = make_context(client_config());
  for (std::string name : {"echo.shop.svc.cluster.local", "10.96.0.10"}) {
    CAPTURE(name);
    SessionOptions options;
    options.verify_name = name;
    Pair p(client_context, server_context, std::move(options));
    p.pump();
    CHECK_MESSAGE(p.client.session->is_handshake_done(), p.client.error_message());
  }
  struct Mismatch {
    std::string name;
    std::string reason;
  };
  for (const auto& m : {Mismatch{"other.shop.svc.cluster.local", "Hostname mismatch"},
                        Mismatch{"shop.svc.cluster.local", "Hostname mismatch"},
                        Mismatch{"10.96.0.11", "IP address mismatch"}}) {
    CAPTURE(m.name);
    SessionOptions options;
    options.verify_name = m.name;
    Pair p(client_context, server_context, std::move(options));
    p.pump();
    CHECK(p.client.error_message() ==
          "tls handshake failed: certificate verify failed: " + m.reason);
    CHECK(p.client.error_code() == ErrorCode::peer_certificate);
  }
}

TEST_CASE("Session options are validated") {
  auto client = make_context(client_config());
  auto server = make_context(server_config());
  ContextConfig insecure_config = client_config();
  insecure_config.verify_peer = false;
  auto insecure = make_context(insecure_config);
  auto error = [](std::shared_ptr<const Context> context, SessionOptions options,
                  bool with_handler = true) {
    if (with_handler) options.on_plaintext = [](const char*, size_t) {};
    auto session = Session::create(std::move(context), std::move(options));
    if (session.ok()) return std::string("(ok)");
    CHECK(error_code(session.error()) == ErrorCode::invalid_argument);
    return session.error().message;
  };
  CHECK(error(nullptr, {}) == "context: required");
  CHECK(error(client, {}, false) == "on_plaintext: required");
  CHECK(error(server, with_sni("echo")) == "server_name: only a client sends SNI");
  SessionOptions o;
  o.verify_name = "echo";
  CHECK(error(server, o) == "verify_name: only a client matches the server's name");
  CHECK(error(insecure, o) == "verify_name: requires a context with verify_peer");
  o = {};
  o.peer_check = expect_spiffe_id(kServerId);
  CHECK(error(insecure, o) == "peer_check: requires a context with verify_peer");
  CHECK(error(client, with_sni("10.96.0.10")) ==
        "server_name: 10.96.0.10 is an IP address; SNI carries DNS names only (use verify_name)");
  CHECK(error(client, with_sni("fd00::1")) ==
        "server_name: fd00::1 is an IP address; SNI carries DNS names only (use verify_name)");
  const std::string not_dns =
      "server_name: not a DNS name (letters, digits, '-', '_' and '.', at most 253 bytes)";
  CHECK(error(client, with_sni("echo shop")) == not_dns);
  CHECK(error(client, with_sni(std::string("echo\0evil", 9))) == not_dns);
  CHECK(error(client, with_sni(std::string(254, 'a'))) == not_dns);
  CHECK(error(client, with_sni(std::string(253, 'a'))) == "(ok)");
  CHECK(error(client, with_sni("echo.shop")) == "(ok)");
}

TEST_CASE("a Session keeps its Context alive across rotation") {
  auto client_context = make_context(client_config());
  auto server_context = make_context(server_config());
  Pair p(client_context, server_context);
  // The holder swaps in new Contexts; the old ones live on in the Sessions.
  server_context = make_context(server_config(pki().unrelated));
  client_context.reset();
  p.pump();
  CHECK_MESSAGE(p.server.session->is_handshake_done(), p.server.error_message());
  REQUIRE(p.client.session->write("still here").ok());
  p.pump();
  CHECK(p.server.received == "still here");
}

TEST_CASE("input after the peer's close_notify is ignored") {
  Pair p(make_context(client_config()), make_context(server_config()));
  p.pump();
  REQUIRE(p.client.session->close_notify().ok());
  p.pump();
  REQUIRE(p.server.session->peer_closed());
  CHECK(p.server.session->feed_input("junk", 4).ok());
  CHECK(p.server.received.empty());
}

TEST_CASE("feed_input from inside the Session's own callback is refused") {
  auto client_context = make_context(client_config());
  auto server_context = make_context(server_config());
  Session* server_ptr = nullptr;
  std::string reentry;
  SessionOptions server_options;
  server_options.on_plaintext = [&](const char* d, size_t n) {
    auto status = server_ptr->feed_input(d, n);
    reentry = status.ok() ? "(ok)" : status.error().message;
  };
  auto server = Session::create(server_context, std::move(server_options));
  REQUIRE(server.ok());
  server_ptr = server->get();
  SessionOptions client_options;
  client_options.on_plaintext = [](const char*, size_t) {};
  auto client = Session::create(client_context, std::move(client_options));
  REQUIRE(client.ok());
  REQUIRE((*client)->write("x").ok());
  std::string wire;
  for (int i = 0; i < 3; ++i) {
    (*client)->take_output(wire);
    REQUIRE((*server)->feed_input(wire.data(), wire.size()).ok());
    (*server)->take_output(wire);
    REQUIRE((*client)->feed_input(wire.data(), wire.size()).ok());
  }
  CHECK(reentry == "feed_input: called from inside a Session callback");
}

TEST_CASE("a handshake cut anywhere in the server's flight ends in truncation") {
  auto client_context = make_context(client_config());
  auto server_context = make_context(server_config());
  size_t flight_size = 1;
  for (size_t cut = 0; cut < flight_size; cut += 23) {
    CAPTURE(cut);
    Pair p(client_context, server_context);
    std::string wire;
    p.client.session->take_output(wire);
    REQUIRE(p.server.session->feed_input(wire.data(), wire.size()).ok());
    p.server.session->take_output(wire);
    flight_size = wire.size();
    REQUIRE(p.client.session->feed_input(wire.data(), std::min(cut, wire.size())).ok());
    CHECK_FALSE(p.client.session->is_handshake_done());
    auto eof = p.client.session->feed_eof();
    REQUIRE_FALSE(eof.ok());
    CHECK(error_code(eof.error()) == ErrorCode::truncated);
  }
  CHECK(flight_size > 500);
}

TEST_CASE("mutated ClientHellos never crash the server") {
  auto client_context = make_context(client_config());
  auto server_context = make_context(server_config());
  Pair reference(client_context, server_context);
  std::string hello;
  reference.client.session->take_output(hello);
  uint32_t state = 12345;
  auto next = [&state] {
    state = state * 1103515245u + 12345u;
    return state >> 8;
  };
  int failed = 0;
  for (int i = 0; i < 300; ++i) {
    std::string mutated = hello;
    for (int flips = 1 + next() % 4; flips > 0; --flips) {
      mutated[next() % mutated.size()] = static_cast<char>(next() & 0xff);
    }
    if (i % 3 == 0) mutated.resize(next() % mutated.size());
    auto server = lone_server(server_context);
    auto status = server->feed_input(mutated.data(), mutated.size());
    if (!status.ok()) {
      ++failed;
      CHECK(status.error().message.rfind("tls handshake failed: ", 0) == 0);
      CHECK(server->failed());
    }
  }
  CHECK(failed > 100);
}
