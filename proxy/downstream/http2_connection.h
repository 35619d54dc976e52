// Http2ServerConnection: HTTP/2 from a client (prior knowledge / h2c, or the
// mesh's sidecar-to-sidecar connection), one exchange per stream.
//
// - common/http2's server Session does the protocol; every receive() is
//   followed by produce() and a socket write, as the Session requires.
// - Request bodies: DATA is handed to the exchange and its flow-control
//   credit returned (Session::consume) right after, unless the exchange has
//   paused the body; then the credit is withheld until resume_request_body(),
//   so the client stalls at its stream window (at most one window of data
//   still arrives after the pause).
// - Responses: send_response_* submit to the Session; trailers end the
//   response (gRPC status). reset() sends RST_STREAM INTERNAL_ERROR. An
//   exchange is congested while its stream has more than stream_high_water
//   bytes queued in the Session (the client's window is closed) or the
//   socket's write queue is above its high water; it is writable again at
//   stream_low_water and a drained socket. While the socket is congested the
//   connection stops reading, so a client that does not read cannot make
//   the Session pile up replies.
// - A client reset (RST_STREAM), a connection failure or the owner
//   destroying the connection: on_downstream_reset for every exchange still
//   running. A malformed stream is reset by the Session alone (counted as
//   stream_error); a connection error (a garbage preface, a protocol
//   violation) sends GOAWAY if owed, closes the connection and is counted as
//   connection_error.
// - The client's EOF ends the connection: streams still open are reset.
// - drain(): graceful GOAWAY (the Session's shutdown notice, then the final
//   GOAWAY after a PING round trip); the connection closes when the last
//   stream is done. With no stream open for idle_timeout: GOAWAY and close.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/base/result.h"
#include "common/event/deadline.h"
#include "common/event/turn_task.h"
#include "common/http/message.h"
#include "common/http2/session.h"
#include "common/net/tcp_connection.h"
#include "proxy/downstream/metrics.h"
#include "proxy/downstream/server_connection.h"
#include "proxy/http/stream.h"

namespace trellis::proxy::downstream {

struct Http2Options {
  http2::SessionConfig session;  // the role is always server
  // No stream open for this long: GOAWAY and close.
  std::chrono::milliseconds idle_timeout{60000};
  // Response bytes queued per stream (client window closed) before the
  // exchange is told it is congested, and the level at which it is writable.
  size_t stream_high_water = 64 * 1024;
  size_t stream_low_water = 16 * 1024;
};

// Errors: the Session's ("http2 config: ..."), "http2: idle_timeout must be
// positive, got 0 ms", "http2: stream_low_water (10) must not exceed
// stream_high_water (5)", "http2: stream_high_water must be positive".
Status validate(const Http2Options& options);

class Http2ServerConnection final : public ServerConnection,
                                    private net::TcpConnection::Handler,
                                    private http2::SessionHandler {
 public:
  // `info` describes the connection (its protocol is HTTP/2). The factory
  // and the metrics must outlive the connection.
  static Result<std::unique_ptr<Http2ServerConnection>> create(
      std::unique_ptr<net::TcpConnection> connection, http::ExchangeFactory& factory,
      http::DownstreamInfo info, const Http2Options& options, const DownstreamMetrics& metrics);
  ~Http2ServerConnection() override;

  void start(std::string replay, bool peer_eof) override;
  void drain() override;
  size_t active_requests() const override { return streams_.size(); }

 private:
  class Stream;
  template <typename, typename>
  friend class AttachedStream;

  Http2ServerConnection(std::unique_ptr<net::TcpConnection> connection,
                        http::ExchangeFactory& factory, http::DownstreamInfo info,
                        const Http2Options& options, const DownstreamMetrics& metrics);

  // net::TcpConnection::Handler
  void on_data(const char* data, size_t length) override;
  void on_eof() override;
  void on_error(const Error& error) override;
  void on_write_high_water() override;
  void on_write_drained() override;
  void on_closed() override;

  // http2::SessionHandler (from inside receive() and produce())
  void on_request_head(int32_t stream_id, trellis::http::RequestHead&& head,
                       bool end_stream) override;
  void on_data(int32_t stream_id, const char* data, size_t len) override;
  void on_trailers(int32_t stream_id, trellis::http::HeaderMap&& trailers) override;
  void on_end_stream(int32_t stream_id) override;
  void on_stream_close(int32_t stream_id, uint32_t error_code) override;
  void on_stream_error(int32_t stream_id, const Error& error) override;
  void on_session_error(const Error& error) override;

  // Called by Stream on behalf of the exchange.
  void send_head(Stream& s, trellis::http::ResponseHead&& head, bool end_stream);
  void send_data(Stream& s, std::string_view data, bool end_stream);
  void send_trailers(Stream& s, trellis::http::HeaderMap&& trailers);
  void reset_from_exchange(Stream& s);
  void pause_body(Stream& s);
  void resume_body(Stream& s);

  Stream* find(int32_t stream_id) const;
  void end_response(Stream& s);
  // The exchange broke the protocol (or the Session refused what it sent):
  // log, reset the stream, let the exchange go.
  void stream_failed(Stream& s, std::string_view what);
  void receive(const char* data, size_t length);
  // produce() + write, until the Session has nothing more; then the
  // follow-ups (RST NO_ERROR after early responses, writability, closing).
  void flush();
  void after_flush();
  void update_congestion(Stream& s);
  void update_idle_timer();
  void on_idle_timeout();
  void on_kick();
  void close_gracefully();
  // The transport is gone or must go: every open stream is reset.
  void abort_session();

  std::unique_ptr<net::TcpConnection> connection_;
  http::ExchangeFactory& factory_;
  http::DownstreamInfo info_;
  Http2Options options_;
  const DownstreamMetrics& metrics_;
  std::unique_ptr<http2::Session> session_;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;
  // Closed streams, destroyed with their exchanges on the next kick: a later
  // callback, never inside one of the exchange's calls.
  std::vector<std::unique_ptr<Stream>> retired_;
  // Streams whose response ended before their request: RST_STREAM NO_ERROR
  // once the response has left the Session.
  std::vector<int32_t> early_responses_;
  // Streams whose exchange was told it is congested.
  std::vector<int32_t> congested_streams_;
  std::string out_;

  bool started_ = false;
  bool in_session_ = false;  // inside receive() or produce(): flushing waits
  bool flushing_ = false;
  bool flush_again_ = false;
  bool socket_congested_ = false;
  bool draining_ = false;
  bool closing_ = false;
  event::Deadline idle_deadline_;
  event::TurnTask kick_;  // reaps retired streams, reports an abort on a fresh stack
};

}  // namespace trellis::proxy::downstream
