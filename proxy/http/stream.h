// The seams of the sidecar's HTTP engine. A request flows
//
//   DownstreamStream ──► Exchange ──► UpstreamStream
//   (HTTP/1 or HTTP/2      (routing, filters,    (HTTP/1 pool connection,
//    server side)           retries, timeouts)    HTTP/2 stream to an endpoint)
//
// Both sides are protocol-neutral so that the exchange never knows which codec
// (or, later, whether TLS) is underneath. Every object lives on one worker
// loop; nothing here is thread-safe.
//
// Back-pressure: a side whose write buffer passes its high-water mark reports
// `congested`; the exchange pauses the opposite side's reads until it reports
// `writable` again. No side buffers without bound.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/http/message.h"
#include "common/net/address.h"

namespace trellis::proxy::http {

enum class Direction { outbound, inbound };

// "outbound" or "inbound": the `direction` label of every metric.
std::string_view direction_name(Direction direction);

// What the exchange knows about the connection a request arrived on.
struct DownstreamInfo {
  Direction direction = Direction::outbound;
  net::Address peer;
  net::Address original_destination;  // the ClusterIP:port (outbound) or pod port (inbound)
  trellis::http::Version protocol = trellis::http::Version::http11;
  std::string peer_identity;  // SPIFFE ID of a meshed peer; empty when unknown
};

// The client side of one request, implemented by the HTTP/1 and HTTP/2 server
// connections.
class DownstreamStream {
 public:
  virtual ~DownstreamStream() = default;
  virtual const DownstreamInfo& info() const = 0;
  virtual void send_response_head(trellis::http::ResponseHead&& head, bool end_stream) = 0;
  virtual void send_response_data(std::string_view data, bool end_stream) = 0;
  // Ends the response with trailers (gRPC status).
  virtual void send_response_trailers(trellis::http::HeaderMap&& trailers) = 0;
  // Aborts the response: HTTP/2 resets the stream, HTTP/1 closes the connection.
  virtual void reset() = 0;
  virtual void pause_request_body() = 0;
  virtual void resume_request_body() = 0;
};

// Implemented by the exchange; called by the downstream connection.
class DownstreamCallbacks {
 public:
  virtual ~DownstreamCallbacks() = default;
  virtual void on_request_data(std::string_view data, bool end_stream) = 0;
  virtual void on_request_trailers(trellis::http::HeaderMap&& trailers) = 0;
  // The client went away or reset the stream: cancel everything upstream.
  virtual void on_downstream_reset() = 0;
  virtual void on_response_congested() = 0;
  virtual void on_response_writable() = 0;
};

// How the upstream side reaches an endpoint.
enum class UpstreamProtocol {
  http1,  // plaintext HTTP/1.1 keep-alive pool (unmeshed endpoint, HTTP/1 request)
  h2c,    // plaintext HTTP/2 prior knowledge (unmeshed endpoint, HTTP/2 or gRPC request)
  mesh,   // one multiplexed HTTP/2 connection to the endpoint's sidecar (meshed endpoint)
};

// Why an attempt ended without a complete response. Decides retries and the
// local reply.
enum class UpstreamFailure {
  connect_failed,  // refused, unreachable or connect timeout: nothing was sent (retryable)
  refused_stream,  // HTTP/2 REFUSED_STREAM or GOAWAY above our stream: not processed (retryable)
  reset,           // reset or closed after the request was (partly) sent
  protocol_error,  // the endpoint sent a malformed response
};

std::string_view failure_name(UpstreamFailure f);

// One request to one endpoint. After on_upstream_failure or the end of the
// response no callback fires again.
class UpstreamStream {
 public:
  virtual ~UpstreamStream() = default;  // destroying an unfinished stream cancels it
  virtual void send_request_head(trellis::http::RequestHead&& head, bool end_stream) = 0;
  virtual void send_request_data(std::string_view data, bool end_stream) = 0;
  virtual void send_request_trailers(trellis::http::HeaderMap&& trailers) = 0;
  virtual void pause_response_body() = 0;
  virtual void resume_response_body() = 0;
};

// Implemented by the exchange (one per attempt); called by the upstream side.
class UpstreamCallbacks {
 public:
  virtual ~UpstreamCallbacks() = default;
  virtual void on_response_head(trellis::http::ResponseHead&& head, bool end_stream) = 0;
  virtual void on_response_data(std::string_view data, bool end_stream) = 0;
  virtual void on_response_trailers(trellis::http::HeaderMap&& trailers) = 0;
  virtual void on_upstream_failure(UpstreamFailure failure, const Error& detail) = 0;
  virtual void on_request_congested() = 0;
  virtual void on_request_writable() = 0;
};

// Where one attempt goes.
struct UpstreamTarget {
  net::Address address;
  UpstreamProtocol protocol = UpstreamProtocol::http1;
  std::string identity;  // expected SPIFFE ID of a meshed endpoint (checked once mTLS lands)
};

// Per-worker connection pools. new_stream returns at once; the stream
// connects (or waits for a pooled connection) by itself and reports
// connect_failed through the callbacks, never from inside new_stream.
class UpstreamPool {
 public:
  virtual ~UpstreamPool() = default;
  virtual std::unique_ptr<UpstreamStream> new_stream(const UpstreamTarget& target,
                                                     UpstreamCallbacks& callbacks) = 0;
};

// Creates the exchange for each request a downstream connection receives.
// The downstream connection owns what it returns and destroys it on the next
// loop turn once the response has ended (the rest of a request body still
// arriving is then dropped) or the stream was reset; the exchange never
// deletes itself. After on_downstream_reset() the stream's methods are no-ops.
class ExchangeFactory {
 public:
  virtual ~ExchangeFactory() = default;
  virtual std::unique_ptr<DownstreamCallbacks> create(DownstreamStream& stream,
                                                      trellis::http::RequestHead&& head,
                                                      bool end_stream) = 0;
};

}  // namespace trellis::proxy::http
