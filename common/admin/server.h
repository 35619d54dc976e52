// A small HTTP/1.1 server for the operational endpoints every Trellis binary
// exposes (/metrics, /ready, /live, ...), built on our own TCP and HTTP code.
// Handlers are synchronous and run on the server's loop; bodies are buffered
// (bounded) because admin requests and answers are small.
//
//   auto server = admin::Server::listen(loop, addr).value();
//   server->route("GET", "/live", [](const admin::Request&) { return admin::Response::text(200, "ok\n"); });
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/base/result.h"
#include "common/event/event_loop.h"
#include "common/http/message.h"
#include "common/net/address.h"
#include "common/net/listener.h"

namespace trellis::admin {

struct Request {
  http::RequestHead head;
  std::string body;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  http::HeaderMap headers;

  static Response text(int status, std::string body);
  static Response json(int status, std::string body);
};

using Handler = std::function<Response(const Request&)>;

struct ServerOptions {
  size_t max_body_bytes = 64 * 1024;  // larger request bodies get 413
  // A request head must arrive within this after the connection opens or the
  // previous response was written (slowloris): 408 and close.
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};
  size_t max_connections = 128;  // further connections are closed at once
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> listen(event::EventLoop& loop, const net::Address& address,
                                                ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Exact path match (the query is ignored). A path served for other methods
  // answers 405 with Allow; an unknown path 404.
  void route(std::string_view method, std::string_view path, Handler handler);

  const net::Address& local_address() const { return listener_->local_address(); }
  size_t open_connections() const { return connections_.size(); }

 private:
  class Connection;
  friend class Connection;

  Server(event::EventLoop& loop, ServerOptions options);
  void accept(std::unique_ptr<net::TcpConnection> tcp);
  void remove(Connection* connection);
  Response dispatch(const Request& request) const;

  event::EventLoop& loop_;
  ServerOptions options_;
  std::unique_ptr<net::Listener> listener_;
  // path → method → handler
  std::map<std::string, std::map<std::string, Handler>, std::less<>> routes_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
};

}  // namespace trellis::admin
