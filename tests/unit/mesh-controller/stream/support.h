// Helpers for the stream server's tests: an in-memory transport the test
// drives byte by byte, an HTTP/2 client session that records what it gets,
// and route tables from a real Resolver.
#pragma once

#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/http2/session.h"
#include "common/kube/objects.h"
#include "mesh-controller/resolve/resolver.h"
#include "mesh-controller/stream/server.h"
#include "mesh-controller/stream/transport.h"
#include "tests/unit/common/event/loop_test_util.h"

namespace trellis::controller::stream::test {

inline void require_ok(const Status& s) {
  if (!s.ok()) FAIL(s.error().message);
}

// The server's end of an in-memory connection. What the server writes waits
// in `to_client` (and counts as queued) until the test's client reads it.
struct PipeState {
  Transport::Handler* handler = nullptr;
  std::string to_client;
  bool paused = false;
  bool close_requested = false;
  bool closed = false;
  bool destroyed = false;
  std::optional<std::string> identity;
};

class PipeTransport final : public Transport {
 public:
  explicit PipeTransport(std::shared_ptr<PipeState> state) : state_(std::move(state)) {}
  ~PipeTransport() override { state_->destroyed = true; }
  Status start(Handler& handler) override {
    state_->handler = &handler;
    return ok_status();
  }
  Status write(std::string_view bytes) override {
    if (state_->close_requested) return make_error("write: connection is closing");
    state_->to_client.append(bytes);
    return ok_status();
  }
  size_t queued_bytes() const override { return state_->to_client.size(); }
  void pause_reading() override { state_->paused = true; }
  void resume_reading() override { state_->paused = false; }
  void close() override { state_->close_requested = true; }
  std::optional<std::string> peer_identity() const override { return state_->identity; }
  std::string peer_address() const override { return "pipe"; }

 private:
  std::shared_ptr<PipeState> state_;
};

// What one response stream delivered to the client.
struct Response {
  std::optional<http::ResponseHead> head;
  std::string body;
  bool ended = false;
  std::optional<uint32_t> closed;
  size_t unconsumed = 0;

  // The complete lines of the body so far (heartbeats included, as "").
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t nl = body.find('\n'); nl != std::string::npos; nl = body.find('\n', start)) {
      out.push_back(body.substr(start, nl - start));
      start = nl + 1;
    }
    return out;
  }
  // The complete non-empty lines: the tables.
  std::vector<std::string> tables() const {
    std::vector<std::string> out;
    for (std::string& l : lines()) {
      if (!l.empty()) out.push_back(std::move(l));
    }
    return out;
  }
};

// An HTTP/2 client on a PipeTransport's far end.
class Client final : public http2::SessionHandler {
 public:
  Client(stream::Server& server, std::optional<std::string> identity = std::nullopt,
         uint32_t stream_window = 65535) {
    pipe = std::make_shared<PipeState>();
    pipe->identity = std::move(identity);
    http2::SessionConfig config;
    config.role = http2::Role::client;
    config.initial_stream_window = stream_window;
    config.connection_window = std::max<uint32_t>(stream_window, 65535) * 4;
    auto s = http2::Session::create(config, *this);
    REQUIRE(s.ok());
    session = std::move(*s);
    server.adopt(std::make_unique<PipeTransport>(pipe));
  }

  int32_t get(const std::string& target, const std::string& method = "GET") {
    http::RequestHead head;
    head.method = method;
    head.target = target;
    head.authority = "controller";
    head.version = http::Version::http2;
    auto id = session->submit_request(head, false);
    REQUIRE(id.ok());
    return *id;
  }

  // Moves bytes both ways until neither side has anything to say.
  void pump() {
    for (bool moved = true; moved;) {
      moved = false;
      std::string out;
      require_ok(session->produce(out));
      if (!out.empty() && pipe->handler != nullptr && !pipe->closed && !pipe->paused) {
        pipe->handler->on_transport_data(out.data(), out.size());
        moved = true;
      }
      if (!pipe->to_client.empty() && reading) {
        std::string in = std::move(pipe->to_client);
        pipe->to_client.clear();
        Status received = session->receive(in.data(), in.size());
        if (!received.ok()) session_error = received.error().message;
        if (pipe->handler != nullptr && !pipe->closed) pipe->handler->on_transport_drained();
        moved = true;
      }
      if (pipe->close_requested && pipe->to_client.empty() && !pipe->closed &&
          pipe->handler != nullptr) {
        pipe->closed = true;
        pipe->handler->on_transport_closed(ok_status());
        moved = true;
      }
    }
  }

  // Returns flow-control credit for everything received on `id`.
  void consume(int32_t id) {
    Response& r = responses[id];
    require_ok(session->consume(id, r.unconsumed));
    r.unconsumed = 0;
  }

  void on_response_head(int32_t id, http::ResponseHead&& head, bool end_stream) override {
    responses[id].head = std::move(head);
    responses[id].ended = end_stream;
  }
  void on_data(int32_t id, const char* data, size_t len) override {
    Response& r = responses[id];
    r.body.append(data, len);
    if (auto_consume) {
      require_ok(session->consume(id, len));
    } else {
      r.unconsumed += len;
    }
  }
  void on_trailers(int32_t, http::HeaderMap&&) override {}
  void on_end_stream(int32_t id) override { responses[id].ended = true; }
  void on_stream_close(int32_t id, uint32_t code) override { responses[id].closed = code; }
  void on_goaway(int32_t, uint32_t code) override { goaway = code; }

  std::shared_ptr<PipeState> pipe;
  std::unique_ptr<http2::Session> session;
  std::map<int32_t, Response> responses;
  std::optional<uint32_t> goaway;
  std::string session_error;
  bool auto_consume = true;
  bool reading = true;  // false: the client does not read its socket
};

// Records the server's demand for tables and answers it from a resolver.
struct Observer final : stream::Server::Observer {
  void on_namespace_watched(const std::string& ns) override {
    watched.push_back(ns);
    if (server != nullptr && resolver != nullptr) server->publish(ns, resolver->compute(ns), std::nullopt);
  }
  void on_namespace_unwatched(const std::string& ns) override { unwatched.push_back(ns); }

  stream::Server* server = nullptr;
  resolve::Resolver* resolver = nullptr;
  std::vector<std::string> watched;
  std::vector<std::string> unwatched;
};

// A ClusterIP Service in `ns` with one HTTP port; `ip` must be unique.
inline kube::Service service(const std::string& ns, const std::string& name, const std::string& ip,
                             int32_t port = 80) {
  kube::Service s;
  s.metadata.name = name;
  s.metadata.namespace_ = ns;
  s.metadata.resource_version = "1";
  s.cluster_ip = ip;
  s.cluster_ips = {ip};
  kube::ServicePort p;
  p.name = "http";
  p.port = port;
  p.target_port.int_value = 8080;
  s.ports.push_back(p);
  return s;
}

inline std::unique_ptr<resolve::Resolver> make_resolver() {
  auto r = resolve::Resolver::create(resolve::Config{});
  REQUIRE(r.ok());
  return std::move(*r);
}

// Adds `count` Services shop/svc-<first>... so that tables grow.
inline void add_services(resolve::Resolver& resolver, int first, int count) {
  for (int i = first; i < first + count; ++i) {
    (void)resolver.upsert_service(service("shop", "svc-" + std::to_string(i),
                                          "10.96." + std::to_string(i / 250) + "." +
                                              std::to_string(i % 250 + 1)));
  }
}

}  // namespace trellis::controller::stream::test
