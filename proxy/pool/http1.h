// Internal to proxy/pool: the HTTP/1.1 keep-alive pool of one endpoint.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/event/deadline.h"
#include "common/http1/decoder.h"
#include "common/http1/encoder.h"
#include "proxy/pool/internal.h"

namespace trellis::proxy::pool {

class Http1Connection;
class Http1Endpoint;

class Http1Stream final : public StreamBase {
 public:
  Http1Stream(Context& context, Http1Endpoint& endpoint, http::UpstreamCallbacks& callbacks)
      : StreamBase(context, callbacks), endpoint_(&endpoint) {}
  ~Http1Stream() override;

  void send_request_head(trellis::http::RequestHead&& head, bool end_stream) override;
  void send_request_data(std::string_view data, bool end_stream) override;
  void send_request_trailers(trellis::http::HeaderMap&& trailers) override;
  void pause_response_body() override;
  void resume_response_body() override;

  // The endpoint queued the stream (or stopped waiting for a connection).
  void set_waiting(Http1Endpoint* endpoint) { endpoint_ = endpoint; }
  // A connection took the stream: hands it what was buffered.
  void attached(Http1Connection& connection);
  // The connection is done with the stream (finished, failed or requeued).
  void detached() { connection_ = nullptr; }
  void orphan() override;

 private:
  size_t queued_request_bytes() const override;

  Http1Endpoint* endpoint_;                // while waiting for a connection
  Http1Connection* connection_ = nullptr;  // while a connection carries the request
};

class Http1Connection final : public Retired,
                              private Transport::Handler,
                              private http1::ResponseHandler {
 public:
  Http1Connection(Context& context, Http1Endpoint& endpoint);
  ~Http1Connection() override;

  // Starts dialling; the endpoint hears the outcome.
  Status connect();
  // Takes a stream (the connection is established and free).
  void attach(Http1Stream& stream);
  // Parks the connection in the pool: reading on (a close shows), idle timer on.
  void park();
  // Closes the socket and leaves the endpoint (graceful: FIN after the
  // queued bytes; else a reset). The object dies on a later turn.
  void close(bool graceful);

  // From the attached stream.
  void send_head(trellis::http::RequestHead&& head, bool end_stream);
  void send_data(std::string_view data, bool end_stream);
  void send_trailers(trellis::http::HeaderMap&& trailers);
  void pause_reading();
  void resume_reading();
  // The attached stream is being destroyed.
  void detach(Http1Stream& stream);
  size_t queued_bytes() const;

 private:
  enum class State { connecting, idle, busy, closed };

  void on_connected(const Status& status);

  // Transport::Handler
  void on_transport_data(const char* data, size_t length) override;
  void on_transport_eof() override;
  void on_transport_error(const Error& error) override;
  void on_transport_high_water() override;
  void on_transport_drained() override;
  void on_transport_closed() override {}

  // http1::ResponseHandler
  void on_interim(trellis::http::ResponseHead&& head) override;
  void on_head(trellis::http::ResponseHead&& head, const http1::MessageInfo& info) override;
  void on_body(const char* data, size_t length) override;
  void on_trailers(trellis::http::HeaderMap&& trailers) override;
  void on_message_complete() override;
  void on_error(const Error& error) override;

  bool write(std::string_view bytes);
  // The response completed and the decoder returned: reuse or close.
  void finish_exchange(bool leftover);
  // The request cannot go on (our side's fault); the connection is unusable.
  void fail_request(const std::string& why);
  // The connection ended while busy: fail (or requeue) the stream and close.
  void lost(const std::string& why);
  // Fails the attached stream, if it is still going, and closes.
  void fail_and_close(UpstreamFailure failure, const std::string& detail);

  Context& ctx_;
  Http1Endpoint& endpoint_;
  std::unique_ptr<Transport> transport_;
  http1::ResponseDecoder decoder_;
  event::Deadline idle_deadline_;
  State state_ = State::connecting;
  bool counted_open_ = false;
  uint64_t served_ = 0;   // requests completed on this connection
  bool was_parked_ = false;  // it has waited in the idle pool, where the peer may close it

  // The request in progress.
  Http1Stream* stream_ = nullptr;
  bool reused_ = false;               // it served or idled before: a close may race this request
  bool head_sent_ = false;
  bool wrote_ = false;                // some request byte was handed to the transport
  bool request_complete_ = false;
  http1::Framing framing_;
  uint64_t body_remaining_ = 0;       // request, content-length framing
  bool response_started_ = false;     // some response byte arrived
  bool response_ended_ = false;       // the stream was given its end
  bool response_complete_ = false;    // the decoder completed the message
  bool keep_alive_ = false;
  bool response_sized_ = false;       // content-length framing: the last slice carries the end
  uint64_t response_remaining_ = 0;
  bool finishing_ = false;            // inside decoder_.finish() after EOF
  std::string out_;
};

class Http1Endpoint final : public Endpoint {
 public:
  using Endpoint::Endpoint;
  ~Http1Endpoint() override;

  std::unique_ptr<http::UpstreamStream> new_stream(http::UpstreamCallbacks& callbacks) override;
  bool empty() const override { return connections_.empty() && pending_.empty(); }
  size_t connections() const override { return connections_.size(); }
  void drain() override;

  // Finds a connection for the stream, or queues it.
  void request(Http1Stream& stream);
  // A waiting stream is being destroyed.
  void cancel(Http1Stream& stream);
  void on_connected(Http1Connection& connection);
  void on_connect_failed(Http1Connection& connection, const Error& error);
  // The request on `connection` is over; reusable says whether another may follow.
  void release(Http1Connection& connection, bool reusable);
  // The connection closed: it leaves the pool (destroyed on a later turn).
  void remove(Http1Connection& connection);

 private:
  // Dials while streams wait that no attempt in flight will serve.
  void connect_more();
  // Fails the waiting streams no connection attempt in flight can serve.
  void fail_unserved(const Error& error);

  std::unordered_map<Http1Connection*, std::unique_ptr<Http1Connection>> connections_;
  std::vector<Http1Connection*> idle_;  // most recently used last
  std::deque<Http1Stream*> pending_;
  size_t connecting_ = 0;
};

}  // namespace trellis::proxy::pool
