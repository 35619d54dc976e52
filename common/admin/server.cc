#include "common/admin/server.h"

#include "common/event/timer.h"
#include "common/http1/decoder.h"
#include "common/http1/encoder.h"
#include "common/log/log.h"

namespace trellis::admin {

Response Response::text(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response Response::json(int status, std::string body) {
  Response r = text(status, std::move(body));
  r.content_type = "application/json";
  return r;
}

// One client connection: decode a request, buffer its body, answer, repeat.
class Server::Connection : public http1::RequestHandler {
 public:
  Connection(Server& server, std::unique_ptr<net::TcpConnection> tcp)
      : server_(server),
        tcp_events_(*this),
        tcp_(std::move(tcp)),
        decoder_(*this, decoder_options(server.options_)),
        header_timer_(server.loop_, [this] { on_header_timeout(); }) {}

  Status start() {
    header_timer_.start(server_.options_.header_timeout);
    return tcp_->start(tcp_events_);
  }

 private:
  // Socket events; separate from the decoder's handler because both
  // interfaces have an on_error.
  struct TcpEvents : net::TcpConnection::Handler {
    explicit TcpEvents(Connection& c) : c(c) {}
    void on_data(const char* data, size_t length) override { c.decoder_.feed(data, length); }
    void on_eof() override {
      c.decoder_.finish();
      c.finish();
    }
    void on_error(const Error&) override { c.server_.remove(&c); }
    void on_closed() override { c.server_.remove(&c); }
    Connection& c;
  };

  static http1::DecoderOptions decoder_options(const ServerOptions& o) {
    http1::DecoderOptions d;
    d.limits.max_body_bytes = o.max_body_bytes;
    return d;
  }

  // http1::RequestHandler
  void on_head(http::RequestHead&& head, const http1::MessageInfo& info) override {
    header_timer_.stop();
    request_.head = std::move(head);
    request_.body.clear();
    keep_alive_ = info.keep_alive && !info.upgrade;
    if (info.expect_continue) {
      std::string out;
      http1::encode_continue(out);
      (void)tcp_->write(out);
    }
  }
  void on_body(const char* data, size_t len) override { request_.body.append(data, len); }
  void on_trailers(http::HeaderMap&&) override {}
  void on_message_complete() override {
    respond(server_.dispatch(request_), keep_alive_);
    if (keep_alive_) header_timer_.start(server_.options_.header_timeout);
  }
  void on_error(const Error& error) override {
    respond(Response::text(error.code, std::string(http::reason_phrase(error.code)) + ": " +
                                           error.message + "\n"),
            false);
  }

  void on_header_timeout() {
    respond(Response::text(408, "request head not received in time\n"), false);
  }

  void respond(const Response& response, bool keep_alive) {
    http::ResponseHead head;
    head.status = response.status;
    head.version = http::Version::http11;
    head.headers = response.headers;
    head.headers.set("Content-Type", response.content_type);
    if (!keep_alive) head.headers.set("Connection", "close");
    std::string out;
    bool head_only = request_.head.method == "HEAD";
    if (auto s = http1::encode_response_head(head, http1::Framing::content_length(response.body.size()),
                                             out);
        !s.ok()) {
      log::error("admin response could not be encoded", {{"error", s.error().message}});
      keep_alive = false;
      out.clear();
    } else if (!head_only) {
      out += response.body;
    }
    (void)tcp_->write(out);
    if (!keep_alive) {
      decoder_.pause();
      finish();
    }
  }

  void finish() {
    header_timer_.stop();
    tcp_->close();  // on_closed removes us
  }

  Server& server_;
  TcpEvents tcp_events_;
  std::unique_ptr<net::TcpConnection> tcp_;
  http1::RequestDecoder decoder_;
  event::Timer header_timer_;
  Request request_;
  bool keep_alive_ = true;
};

Server::Server(event::EventLoop& loop, ServerOptions options) : loop_(loop), options_(options) {}

Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::listen(event::EventLoop& loop, const net::Address& address,
                                               ServerOptions options) {
  std::unique_ptr<Server> server(new Server(loop, options));
  net::ListenerOptions lo;
  lo.reuse_port = false;
  lo.connection.idle_timeout = options.idle_timeout;
  Server* raw = server.get();
  auto listener = net::Listener::listen(
      loop, address, [raw](std::unique_ptr<net::TcpConnection> tcp) { raw->accept(std::move(tcp)); },
      lo);
  if (!listener.ok()) return std::move(listener).error();
  server->listener_ = std::move(*listener);
  return server;
}

void Server::route(std::string_view method, std::string_view path, Handler handler) {
  routes_[std::string(path)][std::string(method)] = std::move(handler);
}

void Server::accept(std::unique_ptr<net::TcpConnection> tcp) {
  if (connections_.size() >= options_.max_connections) {
    tcp->abort();
    return;
  }
  auto connection = std::make_unique<Connection>(*this, std::move(tcp));
  Connection* raw = connection.get();
  connections_.emplace(raw, std::move(connection));
  if (!raw->start().ok()) remove(raw);
}

void Server::remove(Connection* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  // Called from the connection's own callbacks: destroy it on the next turn.
  loop_.delete_later(std::move(it->second));
  connections_.erase(it);
}

Response Server::dispatch(const Request& request) const {
  auto path = routes_.find(request.head.path());
  if (path == routes_.end()) return Response::text(404, "not found\n");
  auto handler = path->second.find(request.head.method);
  if (handler == path->second.end()) {
    if (request.head.method == "HEAD") handler = path->second.find("GET");
    if (handler == path->second.end()) {
      std::string allow;
      for (const auto& [method, unused] : path->second) allow += (allow.empty() ? "" : ", ") + method;
      Response r = Response::text(405, "method not allowed\n");
      r.headers.set("Allow", allow);
      return r;
    }
  }
  return handler->second(request);
}

}  // namespace trellis::admin
