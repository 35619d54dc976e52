// Internal to proxy/pool: the state every endpoint, connection and stream of
// one Pool shares, and the stream half common to both protocols.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/base/result.h"
#include "common/event/callback_scope.h"
#include "common/event/event_loop.h"
#include "common/http/message.h"
#include "common/event/turn_task.h"
#include "proxy/http/stream.h"
#include "proxy/pool/pool.h"
#include "proxy/pool/transport.h"

namespace trellis::proxy::pool {

using http::UpstreamFailure;
using http::UpstreamProtocol;

// Something that ends on a later turn (a closed connection whose own
// callbacks may still be on the stack).
class Retired {
 public:
  virtual ~Retired() = default;
};

class StreamBase;
class Endpoint;

// The pool's guts, shared by reference with everything in it.
struct Context {
  Context(event::EventLoop& loop, const PoolConfig& config, PoolMetrics metrics,
          TransportFactory transports);
  ~Context();

  event::EventLoop& loop;
  const PoolConfig config;
  const PoolMetrics metrics;
  const TransportFactory transports;
  PoolStats stats;
  bool draining = false;

  TransportOptions transport_options() const;

  // Failures are delivered at the end of the turn (a TurnTask) so that no
  // exchange ever hears of one from inside its own call into us.
  void queue_failure(StreamBase& stream);
  void forget_failure(StreamBase& stream);
  // Destroys a finished connection at the end of the turn, once its own
  // callbacks have returned.
  void retire(std::unique_ptr<Retired> object);
  // Closes a transport gracefully and keeps it until it has closed.
  void linger(std::unique_ptr<Transport> transport);
  // An endpoint may have become empty: erase it on a later turn if it is.
  void sweep_later(Endpoint& endpoint);

  void connection_opened(UpstreamProtocol protocol);
  void connection_closed(UpstreamProtocol protocol);
  void connect_failed();
  void pending_added() { ++stats.pending; }
  void pending_removed() { --stats.pending; }

  // Endpoints, by (protocol, address, identity).
  struct Key {
    UpstreamProtocol protocol;
    int family;
    uint16_t port;
    std::string ip_bytes;  // in_addr / in6_addr, raw
    std::string identity;
    bool operator<(const Key& other) const {
      return std::tie(protocol, family, port, ip_bytes, identity) <
             std::tie(other.protocol, other.family, other.port, other.ip_bytes, other.identity);
    }
  };
  static Key key_of(const http::UpstreamTarget& target);
  std::map<Key, std::unique_ptr<Endpoint>> endpoints;

 private:
  struct Lingering;
  void deliver_failures();
  void sweep();

  std::deque<StreamBase*> failures_;
  event::TurnTask deliver_failures_task_;
  std::vector<std::unique_ptr<Retired>> graveyard_;
  std::vector<Endpoint*> sweep_candidates_;
  event::TurnTask sweep_task_;
  std::list<std::unique_ptr<Lingering>> lingering_;
};

// The per-endpoint pool of one protocol.
class Endpoint {
 public:
  Endpoint(Context& context, const http::UpstreamTarget& target, Context::Key key)
      : ctx_(context), target_(target), key_(std::move(key)) {}
  virtual ~Endpoint() = default;
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  virtual std::unique_ptr<http::UpstreamStream> new_stream(http::UpstreamCallbacks& callbacks) = 0;
  // No connection and no waiting stream: the endpoint may be erased.
  virtual bool empty() const = 0;
  // Number of connections, established or being dialled.
  virtual size_t connections() const = 0;
  virtual void drain() = 0;

  const http::UpstreamTarget& target() const { return target_; }
  const Context::Key& key() const { return key_; }
  bool sweep_queued = false;  // owned by Context::sweep_later

 protected:
  Context& ctx_;
  const http::UpstreamTarget target_;
  const Context::Key key_;
};

// What the exchange sent before the stream had somewhere to send it.
struct RequestBuffer {
  std::optional<trellis::http::RequestHead> head;
  bool head_end = false;
  std::string body;
  bool body_end = false;
  std::optional<trellis::http::HeaderMap> trailers;
};

// The protocol-neutral half of an upstream stream: callbacks with
// destruction checks, deferred failure, congestion state, and the buffer
// that holds the request until a connection takes it.
class StreamBase : public http::UpstreamStream {
 public:
  StreamBase(Context& context, http::UpstreamCallbacks& callbacks)
      : ctx_(&context), callbacks_(callbacks) {}
  ~StreamBase() override;

  // Each returns false when the stream was destroyed inside the callback;
  // the caller must then not touch it again. An end (end_stream, trailers)
  // finishes the stream.
  bool deliver_head(trellis::http::ResponseHead&& head, bool end_stream);
  bool deliver_data(std::string_view data, bool end_stream);
  bool deliver_trailers(trellis::http::HeaderMap&& trailers);
  // Ends the stream with a failure, reported from the loop at the end of the turn.
  void fail(UpstreamFailure failure, Error detail);
  // Compares the bytes queued for this stream with the water marks and tells
  // the exchange about a change. Returns false if the stream died.
  bool sync_congestion();
  // Called by Context at the end of the turn.
  void deliver_failure();
  // The pool is being destroyed: forget it; no call does anything any more.
  virtual void orphan() { ctx_ = nullptr; }

  bool finished() const { return finished_; }
  // The whole response was delivered (not a failure).
  bool response_complete() const { return response_complete_; }
  bool response_paused() const { return paused_; }
  RequestBuffer& buffered() { return buffered_; }

 protected:
  // Bytes of this stream's request not yet handed to the kernel (or session).
  virtual size_t queued_request_bytes() const = 0;
  // Buffers request parts while no connection has taken the stream.
  void buffer_head(trellis::http::RequestHead&& head, bool end_stream);
  void buffer_data(std::string_view data, bool end_stream);
  void buffer_trailers(trellis::http::HeaderMap&& trailers);

  Context* ctx_;  // null once orphaned
  http::UpstreamCallbacks& callbacks_;
  RequestBuffer buffered_;
  bool finished_ = false;   // the response ended or a failure is queued: no more callbacks
  bool response_complete_ = false;
  bool paused_ = false;     // pause_response_body is in effect
  bool congested_ = false;  // what the exchange was last told
  bool replaying_ = false;  // moving the buffer into a connection: congestion is settled after
  std::optional<std::pair<UpstreamFailure, Error>> failure_;
  event::DestructionFlag destruction_;
};

// "upstream 10.0.0.1:80: " for error details.
std::string upstream_prefix(const http::UpstreamTarget& target);

}  // namespace trellis::proxy::pool
