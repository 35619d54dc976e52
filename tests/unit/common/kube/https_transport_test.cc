// HttpsTransport against a local TLS server built from our own TCP, TLS and
// HTTP/1 code, scripted per request: keep-alive and the pool limit, timeouts,
// the retry of an idempotent request on a reused connection, streams, TLS
// verification and both kinds of credentials.
#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/http1/decoder.h"
#include "common/http1/encoder.h"
#include "common/kube/errors.h"
#include "common/kube/https_transport.h"
#include "common/net/listener.h"
#include "common/tls/context.h"
#include "common/tls/session.h"
#include "tests/unit/common/event/loop_test_util.h"
#include "tests/unit/common/kube/temp_dir.h"
#include "tests/unit/common/tls/test_pki.h"

namespace kube = trellis::kube;
namespace net = trellis::net;
namespace tls = trellis::tls;
namespace http = trellis::http;
namespace http1 = trellis::http1;
using std::chrono::milliseconds;
using trellis::Result;
using trellis::event::testing::run_for;
using trellis::event::testing::run_until;

namespace {

const tls::test::Leaf& server_leaf() {
  static const tls::test::Leaf leaf = tls::test::pki().intermediate.issue(
      tls::test::LeafSpec{"apiserver", {}, {"localhost"}, {"127.0.0.1", "::1"}});
  return leaf;
}

class Server;

// One accepted connection: TLS, then HTTP/1 requests handed to the script.
class ServerConnection : public net::TcpConnection::Handler, public http1::RequestHandler {
 public:
  ServerConnection(Server& server, std::unique_ptr<net::TcpConnection> tcp);

  void respond(int status, const std::string& body, bool keep_alive = true) {
    http::ResponseHead head;
    head.status = status;
    head.headers.add("Content-Type", "application/json");
    if (!keep_alive) head.headers.add("Connection", "close");
    std::string out;
    REQUIRE(http1::encode_response_head(head, http1::Framing::content_length(body.size()), out).ok());
    out += body;
    send(out);
  }
  void start_chunked(int status = 200) {
    http::ResponseHead head;
    head.status = status;
    std::string out;
    REQUIRE(http1::encode_response_head(head, http1::Framing::chunked(), out).ok());
    send(out);
  }
  void chunk(const std::string& data) {
    std::string out;
    http1::encode_chunk(data, out);
    send(out);
  }
  void end_chunks() {
    std::string out;
    REQUIRE(http1::encode_last_chunk(nullptr, out).ok());
    send(out);
  }
  void close() { tcp_->close(); }
  void send(const std::string& plaintext) {
    REQUIRE(session_->write(plaintext).ok());
    flush();
  }

  std::vector<http::RequestHead> heads;
  std::vector<std::string> bodies;
  bool peer_has_certificate = false;

 private:
  void flush() {
    if (!session_->has_output()) return;
    std::string out;
    session_->take_output(out);
    (void)tcp_->write(out);
  }
  void on_data(const char* data, size_t len) override {
    trellis::Status s = session_->feed_input(data, len);
    flush();
    if (!s.ok()) return;
    if (session_->is_handshake_done()) {
      peer_has_certificate = !session_->peer_certificate_chain().empty();
    }
    size_t used = decoder_.feed(plain_);
    plain_.erase(0, used);
    while (!ready_.empty()) {
      auto [head, body] = std::move(ready_.front());
      ready_.erase(ready_.begin());
      heads.push_back(head);
      bodies.push_back(body);
      dispatch(head);
    }
  }
  void on_eof() override {}
  // Both bases declare on_error(const Error&); this one serves both.
  void on_error(const trellis::Error&) override {}
  void on_head(http::RequestHead&& head, const http1::MessageInfo&) override { current_ = std::move(head); }
  void on_body(const char* data, size_t len) override { body_.append(data, len); }
  void on_trailers(http::HeaderMap&&) override {}
  void on_message_complete() override {
    ready_.emplace_back(std::move(current_), std::move(body_));
    body_.clear();
  }
  void dispatch(const http::RequestHead& head);

  Server& server_;
  std::unique_ptr<net::TcpConnection> tcp_;
  std::unique_ptr<tls::Session> session_;
  http1::RequestDecoder decoder_{*this};
  std::string plain_;
  http::RequestHead current_;
  std::string body_;
  std::vector<std::pair<http::RequestHead, std::string>> ready_;
};

class Server {
 public:
  // Called for every request; answer through the connection (or not).
  using Script = std::function<void(ServerConnection& c, const http::RequestHead& head)>;

  Server(trellis::event::EventLoop& loop, bool require_client_certificate = false) : loop_(loop) {
    tls::ContextConfig config;
    config.role = tls::Role::server;
    config.certificate_chain_pem = server_leaf().chain_pem;
    config.private_key_pem = server_leaf().key_pem;
    config.trust_bundle_pem = tls::test::pki().root.cert_pem();
    config.verify_peer = require_client_certificate;
    config.alpn_protocols = {"http/1.1"};
    config.alpn_mismatch = tls::AlpnMismatch::continue_without;
    config.min_version = tls::TlsVersion::tls1_2;
    context = tls::Context::create(config).value();
    net::ListenerOptions options;
    options.ipv6_only = false;  // "localhost" may resolve to either family
    listener = net::Listener::listen(
                   loop, net::Address::parse("[::]:0").value(),
                   [this](std::unique_ptr<net::TcpConnection> tcp) {
                     connections.push_back(std::make_unique<ServerConnection>(*this, std::move(tcp)));
                   },
                   options)
                   .value();
  }

  uint16_t port() const { return listener->local_address().port(); }
  size_t requests() const {
    size_t n = 0;
    for (const auto& c : connections) n += c->heads.size();
    return n;
  }

  trellis::event::EventLoop& loop_;
  std::shared_ptr<const tls::Context> context;
  std::unique_ptr<net::Listener> listener;
  std::vector<std::unique_ptr<ServerConnection>> connections;
  Script script = [](ServerConnection& c, const http::RequestHead&) { c.respond(200, "{}"); };
};

ServerConnection::ServerConnection(Server& server, std::unique_ptr<net::TcpConnection> tcp)
    : server_(server), tcp_(std::move(tcp)) {
  tls::SessionOptions options;
  options.on_plaintext = [this](const char* data, size_t len) { plain_.append(data, len); };
  session_ = tls::Session::create(server.context, std::move(options)).value();
  REQUIRE(tcp_->start(*this).ok());
}

void ServerConnection::dispatch(const http::RequestHead& head) { server_.script(*this, head); }

kube::ClientConfig config_for(const Server& server, const std::string& host = "127.0.0.1") {
  kube::ClientConfig c;
  c.host = host;
  c.port = server.port();
  c.ca_pem = tls::test::pki().root.cert_pem();
  c.token = "secret-token";
  return c;
}

struct Fixture {
  Fixture() : loop(trellis::event::testing::make_loop()), server(*loop) {}

  std::unique_ptr<kube::HttpsTransport> transport(kube::TransportOptions options = {},
                                                  std::optional<kube::ClientConfig> config = {}) {
    auto t = kube::HttpsTransport::create(*loop, config ? *config : config_for(server), options);
    REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.error().message));
    return std::move(*t);
  }

  // Sends one request and waits for its answer.
  Result<kube::HttpResponse> exchange(kube::HttpsTransport& t, kube::HttpRequest request) {
    std::optional<Result<kube::HttpResponse>> answer;
    t.send(std::move(request), [&](Result<kube::HttpResponse> r) { answer.emplace(std::move(r)); });
    REQUIRE(run_until(*loop, [&] { return answer.has_value(); }));
    return std::move(*answer);
  }

  std::unique_ptr<trellis::event::EventLoop> loop;
  Server server;
};

kube::HttpRequest get(const std::string& target) { return kube::HttpRequest{"GET", target, "", "", {}}; }

}  // namespace

TEST_CASE_FIXTURE(Fixture, "a request carries our headers and returns status and body") {
  server.script = [](ServerConnection& c, const http::RequestHead&) { c.respond(201, R"({"ok":true})"); };
  auto t = transport();
  auto r = exchange(*t, kube::HttpRequest{"POST", "/api/v1/namespaces", "application/json", "{}", {}});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->status == 201);
  CHECK(r->body == R"({"ok":true})");
  const auto& head = server.connections.at(0)->heads.at(0);
  CHECK(head.method == "POST");
  CHECK(head.target == "/api/v1/namespaces");
  CHECK(head.authority == "127.0.0.1:" + std::to_string(server.port()));
  CHECK(*head.headers.get("Authorization") == "Bearer secret-token");
  CHECK(*head.headers.get("Accept") == "application/json");
  CHECK(*head.headers.get("Content-Type") == "application/json");
  CHECK(*head.headers.get("User-Agent") == "trellis");
  CHECK(server.connections.at(0)->bodies.at(0) == "{}");
}

TEST_CASE_FIXTURE(Fixture, "connections are kept alive and reused; the pool is bounded") {
  kube::TransportOptions options;
  options.max_connections = 2;
  auto t = transport(options);
  CHECK(exchange(*t, get("/a"))->status == 200);
  CHECK(exchange(*t, get("/b"))->status == 200);
  CHECK(server.connections.size() == 1);

  // Four at once with answers held back: two connections, the rest queue.
  std::vector<ServerConnection*> held;
  server.script = [&](ServerConnection& c, const http::RequestHead&) { held.push_back(&c); };
  int answered = 0;
  for (int i = 0; i < 4; ++i) {
    t->send(get("/held"), [&](Result<kube::HttpResponse> r) {
      CHECK(r.ok());
      ++answered;
    });
  }
  REQUIRE(run_until(*loop, [&] { return held.size() == 2; }));
  run_for(*loop, milliseconds(50));
  CHECK(held.size() == 2);
  CHECK(server.connections.size() == 2);
  CHECK(t->pooled_connections() == 2);
  server.script = [](ServerConnection& c, const http::RequestHead&) { c.respond(200, "{}"); };
  for (auto* c : held) c->respond(200, "{}");
  REQUIRE(run_until(*loop, [&] { return answered == 4; }));
  CHECK(server.connections.size() == 2);
}

TEST_CASE_FIXTURE(Fixture, "a base path prefixes every target") {
  auto config = config_for(server);
  config.base_path = "/k8s/clusters/c-1";
  auto t = transport({}, config);
  CHECK(exchange(*t, get("/api/v1/pods?limit=1"))->status == 200);
  CHECK(server.connections.at(0)->heads.at(0).target == "/k8s/clusters/c-1/api/v1/pods?limit=1");
}

TEST_CASE_FIXTURE(Fixture, "a request times out and its connection is dropped") {
  server.script = [](ServerConnection&, const http::RequestHead&) {};
  auto t = transport();
  auto r = exchange(*t, kube::HttpRequest{"GET", "/slow", "", "", milliseconds(100)});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == 0);
  CHECK(r.error().message == "timed out after 100 ms");
  CHECK(t->pooled_connections() == 0);
  server.script = [](ServerConnection& c, const http::RequestHead&) { c.respond(200, "{}"); };
  CHECK(exchange(*t, get("/fast"))->status == 200);
}

TEST_CASE_FIXTURE(Fixture, "an idempotent request is retried once when a reused connection dies unanswered") {
  auto t = transport();
  CHECK(exchange(*t, get("/first"))->status == 200);
  // The server drops the kept-alive connection as the next request arrives.
  server.script = [&](ServerConnection& c, const http::RequestHead& head) {
    if (&c == server.connections.front().get()) {
      c.close();
      return;
    }
    c.respond(200, R"({"retried":")" + head.target + "\"}");
  };
  auto r = exchange(*t, get("/second"));
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->body == R"({"retried":"/second"})");
  CHECK(server.connections.size() == 2);

  // A POST is not retried: it may have been applied.
  auto post = exchange(*t, kube::HttpRequest{"POST", "/create", "application/json", "{}", {}});
  CHECK(post->status == 200);  // fresh connection 2 answers
  server.script = [&](ServerConnection& c, const http::RequestHead&) { c.close(); };
  auto refused = exchange(*t, kube::HttpRequest{"POST", "/create", "application/json", "{}", {}});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message == "connection closed before the response arrived");
}

TEST_CASE_FIXTURE(Fixture, "Connection: close is honoured") {
  server.script = [](ServerConnection& c, const http::RequestHead&) { c.respond(200, "{}", false); };
  auto t = transport();
  CHECK(exchange(*t, get("/a"))->status == 200);
  CHECK(exchange(*t, get("/b"))->status == 200);
  CHECK(server.connections.size() == 2);
}

TEST_CASE_FIXTURE(Fixture, "cancel and destruction silence callbacks") {
  server.script = [](ServerConnection&, const http::RequestHead&) {};
  auto t = transport();
  bool called = false;
  auto id = t->send(get("/a"), [&](Result<kube::HttpResponse>) { called = true; });
  REQUIRE(run_until(*loop, [&] { return server.requests() == 1; }));
  t->cancel(id);
  CHECK(t->pooled_connections() == 0);
  t->send(get("/b"), [&](Result<kube::HttpResponse>) { called = true; });
  t.reset();
  run_for(*loop, milliseconds(50));
  CHECK_FALSE(called);
}

TEST_CASE_FIXTURE(Fixture, "a response body over the limit fails the request") {
  server.script = [](ServerConnection& c, const http::RequestHead&) {
    c.respond(200, std::string(2000, 'x'));
  };
  kube::TransportOptions options;
  options.max_response_bytes = 1000;
  auto t = transport(options);
  auto r = exchange(*t, get("/big"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "body exceeds 1000 bytes");
}

namespace {

struct StreamLog : kube::StreamHandler {
  bool opened = false;
  std::string data;
  int data_calls = 0;
  std::optional<trellis::Status> end;
  void on_open() override { opened = true; }
  void on_data(std::string_view bytes) override {
    data.append(bytes);
    ++data_calls;
  }
  void on_end(const trellis::Status& s) override { end = s; }
};

}  // namespace

TEST_CASE_FIXTURE(Fixture, "a stream delivers body bytes as they come, then its end") {
  ServerConnection* conn = nullptr;
  server.script = [&](ServerConnection& c, const http::RequestHead&) {
    conn = &c;
    c.start_chunked();
  };
  auto t = transport();
  StreamLog log;
  auto stream = t->open_stream(get("/api/v1/pods?watch=true"), log);
  REQUIRE(run_until(*loop, [&] { return log.opened; }));
  conn->chunk(R"({"type":"ADDED",)");
  REQUIRE(run_until(*loop, [&] { return log.data.size() == 16; }));
  conn->chunk("\"object\":{}}\n");
  REQUIRE(run_until(*loop, [&] { return log.data.size() == 29; }));
  CHECK(log.data == "{\"type\":\"ADDED\",\"object\":{}}\n");
  CHECK_FALSE(log.end.has_value());
  conn->end_chunks();
  REQUIRE(run_until(*loop, [&] { return log.end.has_value(); }));
  CHECK(log.end->ok());
  CHECK(t->pooled_connections() == 0);  // streams do not use the pool
}

TEST_CASE_FIXTURE(Fixture, "a refused stream reports the apiserver's Status") {
  server.script = [](ServerConnection& c, const http::RequestHead&) {
    c.respond(410, R"j({"kind":"Status","reason":"Expired","message":"too old resource version: 1 (9)","code":410})j");
  };
  auto t = transport();
  StreamLog log;
  auto stream = t->open_stream(get("/watch"), log);
  REQUIRE(run_until(*loop, [&] { return log.end.has_value(); }));
  CHECK_FALSE(log.opened);
  CHECK(log.end->error().code == 410);
  CHECK(log.end->error().message == "Expired (410): too old resource version: 1 (9)");
}

TEST_CASE_FIXTURE(Fixture, "a silent stream is broken after its idle timeout; destroying one is quiet") {
  server.script = [](ServerConnection& c, const http::RequestHead&) { c.start_chunked(); };
  auto t = transport();
  StreamLog log;
  auto stream = t->open_stream(kube::HttpRequest{"GET", "/watch", "", "", milliseconds(150)}, log);
  REQUIRE(run_until(*loop, [&] { return log.end.has_value(); }));
  CHECK(log.opened);
  CHECK(log.end->error().message == "no data from the server for 150 ms");

  StreamLog quiet;
  auto other = t->open_stream(get("/watch"), quiet);
  REQUIRE(run_until(*loop, [&] { return quiet.opened; }));
  other.reset();
  t.reset();  // a stream may also outlive its transport
  run_for(*loop, milliseconds(50));
  CHECK_FALSE(quiet.end.has_value());
}

TEST_CASE_FIXTURE(Fixture, "the server certificate must match the name, and chain to the CA") {
  auto config = config_for(server);
  config.tls_server_name = "kubernetes.default.svc";
  auto t = transport({}, config);
  auto r = exchange(*t, get("/a"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "tls handshake failed: certificate verify failed: Hostname mismatch");

  auto untrusted = config_for(server);
  untrusted.ca_pem = tls::test::pki().other_root.cert_pem();
  auto u = transport({}, untrusted);
  auto ur = exchange(*u, get("/a"));
  REQUIRE_FALSE(ur.ok());
  CHECK(ur.error().message.rfind("tls handshake failed: certificate verify failed", 0) == 0);
}

TEST_CASE_FIXTURE(Fixture, "a DNS name is resolved and verified") {
  auto t = transport({}, config_for(server, "localhost"));
  auto r = exchange(*t, get("/a"));
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(server.connections.at(0)->heads.at(0).authority == "localhost:" + std::to_string(server.port()));
}

TEST_CASE("client certificates authenticate to a server that requires them") {
  auto loop = trellis::event::testing::make_loop();
  Server server(*loop, true);
  auto config = config_for(server);
  config.token.clear();
  config.client_certificate_pem = tls::test::pki().client.chain_pem;
  config.client_key_pem = tls::test::pki().client.key_pem;
  auto t = kube::HttpsTransport::create(*loop, config).value();
  std::optional<Result<kube::HttpResponse>> answer;
  t->send(get("/a"), [&](Result<kube::HttpResponse> r) { answer.emplace(std::move(r)); });
  REQUIRE(run_until(*loop, [&] { return answer.has_value(); }));
  REQUIRE_MESSAGE(answer->ok(), (answer->ok() ? "" : answer->error().message));
  CHECK(server.connections.at(0)->peer_has_certificate);
  CHECK_FALSE(server.connections.at(0)->heads.at(0).headers.contains("Authorization"));
}

TEST_CASE_FIXTURE(Fixture, "a token file is read per request; an unreadable one fails the request") {
  kube::testing::TempDir dir;
  dir.write("token", "first\n");
  auto config = config_for(server);
  config.token.clear();
  config.token_file = dir.file("token");
  auto t = transport({}, config);
  CHECK(exchange(*t, get("/a"))->status == 200);
  dir.write("token", "second");
  CHECK(exchange(*t, get("/b"))->status == 200);
  CHECK(*server.connections.at(0)->heads.at(0).headers.get("Authorization") == "Bearer first");
  CHECK(*server.connections.at(0)->heads.at(1).headers.get("Authorization") == "Bearer second");

  auto missing = config_for(server);
  missing.token_file = dir.file("absent");
  auto m = transport({}, missing);
  auto r = exchange(*m, get("/a"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "token file " + dir.file("absent") + ": No such file or directory");
}

TEST_CASE_FIXTURE(Fixture, "connection failures and bad options") {
  auto config = config_for(server);
  uint16_t port = server.port();
  server.listener.reset();
  auto t = transport({}, config);
  auto r = exchange(*t, get("/a"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == 0);
  CHECK(r.error().message == "connect to 127.0.0.1:" + std::to_string(port) + ": connection refused");

  kube::TransportOptions bad;
  bad.max_connections = 0;
  CHECK(kube::HttpsTransport::create(*loop, config, bad).error().message ==
        "max_connections must be positive");
  auto no_ca = config;
  no_ca.ca_pem = "not a pem";
  CHECK(kube::HttpsTransport::create(*loop, no_ca).error().message.rfind("tls: trust_bundle_pem: ", 0) == 0);
}
