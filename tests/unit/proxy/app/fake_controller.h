// Test helper for the proxy/app tests: a small h2c server standing in for
// trellis-controller's route-table service. It records requests, answers
// each with `status` (a refusal carries `refusal_body`, or ends with its head
// when that is empty), and lets the test write to, end, reset or drop every
// open stream.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "common/event/event_loop.h"
#include "common/http/message.h"
#include "common/http2/session.h"
#include "common/net/listener.h"
#include "common/net/tcp_connection.h"

namespace trellis::proxy::app::testing {

class FakeController {
 public:
  explicit FakeController(event::EventLoop& loop) : loop_(loop) {
    auto l = net::Listener::listen(
        loop, net::Address::parse("127.0.0.1:0").value(),
        [this](std::unique_ptr<net::TcpConnection> c) {
          auto conn = std::make_unique<Conn>(*this, std::move(c));
          if (conn->start()) connections_.push_back(std::move(conn));
        },
        net::ListenerOptions{});
    REQUIRE(l.ok());
    listener_ = std::move(*l);
  }

  uint16_t port() const { return listener_->local_address().port(); }
  size_t accepted() const { return listener_->accepted(); }
  size_t open_streams() const {
    size_t n = 0;
    for (const auto& c : connections_) n += c->open() ? c->streams.size() : 0;
    return n;
  }

  void send(const std::string& bytes) {
    for (auto& c : connections_) c->send(bytes);
  }
  // Ends every open stream; the connections stay.
  void end_all() {
    for (auto& c : connections_) c->end();
  }
  void reset_all(uint32_t error_code) {
    for (auto& c : connections_) c->reset(error_code);
  }
  // Closes every connection with a FIN, streams still open.
  void close_all() {
    for (auto& c : connections_) c->close();
  }
  // Resets every connection.
  void drop_all() {
    for (auto& c : connections_) c->drop();
  }
  // Ends every stream, then GOAWAY.
  void goaway_all() {
    for (auto& c : connections_) c->goaway();
  }

  int status = 200;  // what new requests get
  std::string refusal_body = "go away: no table for you\n";
  std::vector<http::RequestHead> requests;

 private:
  class Conn final : public net::TcpConnection::Handler, public http2::SessionHandler {
   public:
    Conn(FakeController& server, std::unique_ptr<net::TcpConnection> tcp)
        : server_(server), tcp_(std::move(tcp)) {}
    bool start() {
      http2::SessionConfig config;
      config.role = http2::Role::server;
      session_ = std::move(http2::Session::create(config, *this).value());
      if (!tcp_->start(*this).ok()) return false;
      flush();
      return true;
    }
    bool open() const { return tcp_ != nullptr; }
    void send(const std::string& bytes) {
      if (!open()) return;
      for (int32_t id : streams) (void)session_->send_data(id, bytes, false);
      flush();
    }
    void end() {
      if (!open()) return;
      for (int32_t id : streams) (void)session_->send_data(id, {}, true);
      flush();
    }
    void reset(uint32_t error_code) {
      if (!open()) return;
      for (int32_t id : std::vector<int32_t>(streams)) (void)session_->reset_stream(id, error_code);
      flush();
    }
    void close() {
      if (open()) tcp_->close();
    }
    void drop() {
      if (!open()) return;
      tcp_->abort();
      server_.loop_.delete_later(std::move(tcp_));
    }
    void goaway() {
      if (!open()) return;
      for (int32_t id : streams) (void)session_->send_data(id, {}, true);
      (void)session_->shutdown_gracefully();
      flush();
    }
    void flush() {
      if (!open() || in_session_) return;
      std::string out;
      (void)session_->produce(out);
      if (!out.empty()) (void)tcp_->write(out);
      if (session_->is_closed()) tcp_->close();
    }
    void on_data(const char* data, size_t length) override {
      in_session_ = true;
      (void)session_->receive(data, length);
      in_session_ = false;
      flush();
    }
    void on_eof() override { tcp_->close(); }
    void on_error(const Error&) override {}
    void on_request_head(int32_t id, http::RequestHead&& head, bool) override {
      server_.requests.push_back(head);
      http::ResponseHead r;
      r.status = server_.status;
      r.version = http::Version::http2;
      bool refusal_with_body = server_.status != 200 && !server_.refusal_body.empty();
      (void)session_->submit_response(id, r, server_.status == 200 || refusal_with_body);
      if (server_.status == 200) {
        streams.push_back(id);
      } else if (refusal_with_body) {
        (void)session_->send_data(id, server_.refusal_body, true);
      }
    }
    void on_data(int32_t, const char*, size_t) override {}
    void on_trailers(int32_t, http::HeaderMap&&) override {}
    void on_end_stream(int32_t) override {}
    void on_stream_close(int32_t id, uint32_t) override {
      streams.erase(std::remove(streams.begin(), streams.end(), id), streams.end());
    }

    std::vector<int32_t> streams;

   private:
    FakeController& server_;
    std::unique_ptr<net::TcpConnection> tcp_;
    std::unique_ptr<http2::Session> session_;
    bool in_session_ = false;
  };

  event::EventLoop& loop_;
  std::unique_ptr<net::Listener> listener_;
  std::vector<std::unique_ptr<Conn>> connections_;
};

}  // namespace trellis::proxy::app::testing
