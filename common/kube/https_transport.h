// The real Transport: HTTP/1.1 over TLS (BoringSSL, TLS 1.2 or 1.3) to the API
// server, on one EventLoop, no blocking I/O.
//
// Requests share a small pool of keep-alive connections (at most
// max_connections; requests beyond that wait in order). A request that fails
// on a reused connection before any byte of the answer arrived is retried once
// on a new connection if it is idempotent (GET, PUT, DELETE): the server may
// have closed the idle connection as we wrote. Each stream (watch) has a
// connection of its own.
//
// Authentication: the client certificate of the config (mutual TLS) and/or
// `Authorization: Bearer` with the fixed token or the token file's current
// content (re-read when it changes). The server certificate must chain to the
// config's CA and match tls_server_name or host (DNS name or IP address).
//
// Lifetime: loop thread only. Destroying the transport drops pending requests
// without calling back. A Stream may outlive the transport (it keeps what it
// needs), but not the loop.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/event/callback_scope.h"
#include "common/event/event_loop.h"
#include "common/kube/client_config.h"
#include "common/kube/transport.h"

namespace trellis::kube {

struct TransportOptions {
  size_t max_connections = 4;  // pooled request connections; streams not counted
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds request_timeout{30000};    // HttpRequest::timeout default
  std::chrono::milliseconds stream_idle_timeout{600000};  // streams' default silence bound
  std::chrono::milliseconds idle_timeout{60000};  // an unused pooled connection is closed
  size_t max_response_bytes = size_t{64} << 20;   // larger answers fail the request
  std::string user_agent = "trellis";
};

// "max_connections must be positive", "connect_timeout must be positive", ...
Status validate(const TransportOptions& options);

namespace detail {
struct Endpoint;
class Connection;
}  // namespace detail

class HttpsTransport : public Transport {
 public:
  // Builds the TLS context from the config's CA and client certificate.
  // Errors: invalid options, "tls: trust_bundle_pem: ...", "tls: private_key_pem: ...".
  static Result<std::unique_ptr<HttpsTransport>> create(event::EventLoop& loop,
                                                        const ClientConfig& config,
                                                        const TransportOptions& options = {});
  ~HttpsTransport() override;

  RequestId send(HttpRequest request, ResponseCallback done) override;
  void cancel(RequestId id) override;
  std::unique_ptr<Stream> open_stream(HttpRequest request, StreamHandler& handler) override;

  // Pooled connections open or being opened (not streams).
  size_t pooled_connections() const { return slots_.size(); }

 private:
  struct Exchange;
  struct Slot;
  friend struct Slot;

  HttpsTransport(event::EventLoop& loop, std::shared_ptr<detail::Endpoint> endpoint);
  void schedule_pump();
  void pump();
  void assign(Slot& slot, Exchange& exchange);
  void remove_slot(Slot* slot);
  // Removes the exchange and calls its callback; false if `this` died in it.
  bool finish(RequestId id, Result<HttpResponse> result);
  void on_slot_response(Slot& slot);
  void on_slot_failure(Slot& slot, const Error& error);
  void on_timeout(RequestId id);

  event::EventLoop& loop_;
  std::shared_ptr<detail::Endpoint> endpoint_;
  RequestId next_id_ = 1;
  std::map<RequestId, std::unique_ptr<Exchange>> exchanges_;
  std::deque<RequestId> queue_;  // waiting for a connection
  std::vector<std::unique_ptr<Slot>> slots_;
  bool pump_scheduled_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for deferred tasks
  event::DestructionFlag destruction_;
};

}  // namespace trellis::kube
