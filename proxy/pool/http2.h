// Internal to proxy/pool: the multiplexed HTTP/2 connection(s) of one endpoint
// (h2c to an unmeshed endpoint, or the mesh connection to a peer sidecar).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/event/deadline.h"
#include "common/http2/session.h"
#include "proxy/pool/internal.h"

namespace trellis::proxy::pool {

// Marks an HTTP/1 request carried between sidecars as an h2 stream.
inline constexpr std::string_view kOrigProtoHeader = "trellis-orig-proto";

class Http2Connection;
class Http2Endpoint;

class Http2Stream final : public StreamBase {
 public:
  Http2Stream(Context& context, Http2Endpoint& endpoint, http::UpstreamCallbacks& callbacks)
      : StreamBase(context, callbacks), endpoint_(&endpoint) {}
  ~Http2Stream() override;

  void send_request_head(trellis::http::RequestHead&& head, bool end_stream) override;
  void send_request_data(std::string_view data, bool end_stream) override;
  void send_request_trailers(trellis::http::HeaderMap&& trailers) override;
  void pause_response_body() override;
  void resume_response_body() override;

  // Its head has arrived: a connection can take it.
  bool ready() const { return buffered_.head.has_value(); }
  bool congested() const { return congested_; }
  void set_waiting(Http2Endpoint* endpoint) { endpoint_ = endpoint; }
  // A connection opened stream `id` for it (the head is gone from the
  // buffer): hands the rest of the buffer over.
  void submitted(Http2Connection& connection, int32_t id);
  void detached() { connection_ = nullptr; }
  void orphan() override;

 private:
  friend class Http2Connection;
  size_t queued_request_bytes() const override;

  static constexpr size_t kUnlisted = static_cast<size_t>(-1);

  Http2Endpoint* endpoint_;                // while waiting
  Http2Connection* connection_ = nullptr;  // while its h2 stream is open
  int32_t id_ = 0;
  size_t slot_ = kUnlisted;                // its index in connection_->streams_
  bool request_ended_ = false;             // the session has the request's end (END_STREAM)
  size_t owed_ = 0;                        // delivered while paused: credit not yet returned
  std::optional<Error> malformed_;         // the peer broke HTTP/2 message rules on it
};

class Http2Connection final : public Retired,
                              private Transport::Handler,
                              private http2::SessionHandler {
 public:
  Http2Connection(Context& context, Http2Endpoint& endpoint);
  ~Http2Connection() override;

  Status connect();
  // Established and may open another stream now (below the peer's limit;
  // only one until the peer's SETTINGS arrived).
  bool can_take() const;
  // Opens a stream for a ready stream.
  void submit(Http2Stream& stream);
  // No new streams: GOAWAY, then close once the open ones are done.
  void go_away();
  // Something changed that may make the connection idle or let it take more.
  void poke() { flush_task_.schedule(); }

  // From streams.
  void send_data(Http2Stream& stream, std::string_view data, bool end_stream);
  void send_trailers(Http2Stream& stream, trellis::http::HeaderMap&& trailers);
  void consume(Http2Stream& stream, size_t n);
  void cancel(Http2Stream& stream);
  size_t queued_bytes(const Http2Stream& stream) const;

 private:
  enum class State { connecting, ready, draining, closed };
  struct Closed {
    Http2Stream* stream;
    uint32_t code;
  };

  void on_connected(const Status& status);
  // Dispatches waiting streams, writes what the session produced, then
  // settles congestion, closing and idleness.
  void flush();
  // Ends a stream the session closed.
  void close_stream(Http2Stream& stream, uint32_t code, const std::optional<Error>& session_error);
  void settle_closed(const Status& session_status);
  // Gives a stream up on our side (a request we cannot finish).
  void abandon(Http2Stream& stream, const std::string& why);
  void note_peer_preface(size_t length);
  void maybe_idle();
  void lost(const std::string& why);
  void close(bool graceful);
  Http2Stream* stream(int32_t id) const;
  // streams_ keeps each stream's index in its slot_: listing and unlisting
  // cost no allocation per request once the vector has grown.
  void list(Http2Stream& stream);
  void unlist(Http2Stream& stream);  // no-op when it is not listed
  bool listed(const Http2Stream* stream) const;  // by address: it may be gone

  // Transport::Handler
  void on_transport_data(const char* data, size_t length) override;
  void on_transport_eof() override;
  void on_transport_error(const Error& error) override;
  void on_transport_high_water() override {}
  void on_transport_drained() override;
  void on_transport_closed() override {}

  // http2::SessionHandler
  void on_response_head(int32_t stream_id, trellis::http::ResponseHead&& head, bool end_stream) override;
  void on_data(int32_t stream_id, const char* data, size_t len) override;
  void on_trailers(int32_t stream_id, trellis::http::HeaderMap&& trailers) override;
  void on_end_stream(int32_t stream_id) override;
  void on_stream_close(int32_t stream_id, uint32_t error_code) override;
  void on_goaway(int32_t last_stream_id, uint32_t error_code) override;
  void on_stream_error(int32_t stream_id, const Error& error) override;
  void on_session_error(const Error& error) override;

  Context& ctx_;
  Http2Endpoint& endpoint_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<http2::Session> session_;
  State state_ = State::connecting;
  bool counted_open_ = false;
  std::vector<Http2Stream*> streams_;  // submitted and not closed, in no order
  std::vector<Closed> closed_;        // closed inside receive()/produce(), settled after
  bool in_session_ = false;
  std::optional<Error> session_error_;
  std::string lost_reason_;  // why every stream still open was cut off
  bool write_blocked_ = false;
  // The peer's preface is a SETTINGS frame; until it has arrived whole its
  // concurrency limit is unknown.
  bool peer_settings_ = false;
  size_t preface_bytes_ = 0;
  uint32_t preface_length_ = 0;
  std::string out_;
  event::TurnTask flush_task_;  // once per turn: all the turn's frames in one write
  event::Deadline idle_deadline_;
};

class Http2Endpoint final : public Endpoint {
 public:
  using Endpoint::Endpoint;
  ~Http2Endpoint() override;

  std::unique_ptr<http::UpstreamStream> new_stream(http::UpstreamCallbacks& callbacks) override;
  bool empty() const override { return connections_.empty() && pending_.empty(); }
  size_t connections() const override { return connections_.size(); }
  void drain() override;

  bool has_waiting() const { return !pending_.empty(); }

  // Hands ready waiting streams to the active connection while it has room.
  void dispatch();
  // A waiting stream is being destroyed.
  void cancel(Http2Stream& stream);
  void on_connect_failed(Http2Connection& connection, const Error& error);
  // The connection takes no new streams any more (GOAWAY either way).
  void on_going_away(Http2Connection& connection);
  // The connection closed: it leaves (destroyed on a later turn).
  void remove(Http2Connection& connection);

 private:
  void ensure_connection();
  void fail_waiting(const Error& error);

  std::unordered_map<Http2Connection*, std::unique_ptr<Http2Connection>> connections_;
  Http2Connection* active_ = nullptr;  // the one new streams go to
  std::deque<Http2Stream*> pending_;
  bool dispatching_ = false;
  bool redispatch_ = false;
};

}  // namespace trellis::proxy::pool
