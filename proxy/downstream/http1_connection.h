// Http1ServerConnection: HTTP/1.x from a client, one request at a time.
//
// Requests: common/http1's RequestDecoder with pause_after_message, so that
// pipelined requests are served strictly in order: the next request's head is
// not decoded before the previous response has been written (queued on the
// socket) and the socket's write queue is below high water. Each request
// becomes one exchange (ExchangeFactory::create); its body streams to the
// exchange as it arrives.
//
// Responses (send_response_*), encoded by common/http1:
// - framing: Content-Length when the head carries a valid one (or the head
//   ends the response: 0), chunked otherwise; an HTTP/1.0 client gets
//   Content-Length or a close-delimited body. HEAD, 1xx, 204 and 304
//   responses have no body (data sent for them is dropped); a body that
//   disagrees with its Content-Length resets the connection.
// - the status line is always HTTP/1.1 (RFC 9110 §2.5); hop-by-hop fields of
//   the exchange's head are replaced by our own Connection field.
// - keep-alive unless the request asked to close (or was HTTP/1.0 without
//   "Connection: keep-alive"), the exchange's head lists "close", the body is
//   close-delimited, or drain() was called; otherwise "Connection: close" is
//   sent and the connection closes after the response.
// - trailers go out in the last chunk; with any other framing they are dropped.
// - 1xx heads are relayed to HTTP/1.1 clients (never a second 100).
//
// Expect: 100-continue: "100 Continue" is written as soon as the exchange
// is ready for the body, i.e. right after create() returns unless the
// exchange paused the request body or already answered; a paused exchange
// gets it on resume_request_body(). If the final response comes first, the
// connection is closed after it (the client may never send the body).
//
// Early response: when the exchange ends the response before the request
// body has been read, the rest of the body is read and dropped, up to
// max_discard_bytes (a larger declared Content-Length closes the
// connection after the response).
//
// Upgrade (the contract): CONNECT is answered 501 and the connection closed.
// A request with Upgrade reaches the exchange with its Upgrade and
// Connection fields and end_stream=false, even without a body. A 101
// response accepts: once the request message is complete the connection
// becomes a tunnel: every byte the client sends arrives in on_request_data,
// its EOF as end_stream; send_response_data writes raw bytes and its
// end_stream half-closes; when both directions have ended the connection
// closes. Any other response refuses, and the connection goes on with
// HTTP/1 (RFC 9110 §7.8); the exchange never sees that request end: it is
// destroyed when its response ends.
//
// Malformed requests get their status (400, 413, 414, 431, 501, 505) with a
// one-line text body naming the problem and "Connection: close", then the
// connection closes; an exchange already running sees on_downstream_reset.
// A request head not complete within header_timeout of its first byte gets
// 408 (slowloris); a connection with no request for idle_timeout is closed.
//
// Client EOF: after a complete request the response is still delivered
// (half-close), then the connection closes; in the middle of a request it
// is a malformed (cut short) request. A reset reaches the exchange as
// on_downstream_reset.
//
// reset() from the exchange aborts the connection (RST). drain(): finish the
// request in progress with "Connection: close", then close; an idle
// connection closes at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/event/deadline.h"
#include "common/event/turn_task.h"
#include "common/http/message.h"
#include "common/http1/decoder.h"
#include "common/http1/encoder.h"
#include "common/net/tcp_connection.h"
#include "proxy/downstream/metrics.h"
#include "proxy/downstream/server_connection.h"
#include "proxy/http/stream.h"

namespace trellis::proxy::downstream {

struct Http1Options {
  http1::Limits limits;
  // From a request head's first byte to its end.
  std::chrono::milliseconds header_timeout{10000};
  // With no request in progress and no byte of the next one (keep-alive idle).
  std::chrono::milliseconds idle_timeout{60000};
  // Request body still read and dropped after an early response.
  uint64_t max_discard_bytes = 64 * 1024;
  // Bytes of pipelined requests read ahead while a response is pending.
  size_t max_read_ahead_bytes = 64 * 1024;
};

// Errors: "http1: header_timeout must be positive, got 0 ms", same for
// idle_timeout; "http1: max_read_ahead_bytes must be positive".
Status validate(const Http1Options& options);

class Http1ServerConnection final : public ServerConnection,
                                    private net::TcpConnection::Handler {
 public:
  // `info` describes the connection (direction, peer, original destination;
  // protocol is set per request). The factory and the metrics must outlive
  // the connection. Errors: option errors.
  static Result<std::unique_ptr<Http1ServerConnection>> create(
      std::unique_ptr<net::TcpConnection> connection, http::ExchangeFactory& factory,
      http::DownstreamInfo info, const Http1Options& options, const DownstreamMetrics& metrics);
  ~Http1ServerConnection() override;

  void start(std::string replay, bool peer_eof) override;
  void drain() override;
  size_t active_requests() const override { return stream_ ? 1 : 0; }

 private:
  class Stream;
  template <typename, typename>
  friend class AttachedStream;
  // The decoder's handler; its on_error would clash with the socket's.
  class DecoderEvents final : public http1::RequestHandler {
   public:
    explicit DecoderEvents(Http1ServerConnection& c) : c_(c) {}
    void on_head(trellis::http::RequestHead&& head, const http1::MessageInfo& info) override {
      c_.on_request_head(std::move(head), info);
    }
    void on_body(const char* data, size_t len) override { c_.on_request_body(data, len); }
    void on_trailers(trellis::http::HeaderMap&& trailers) override {
      c_.on_request_trailers(std::move(trailers));
    }
    void on_message_complete() override { c_.on_request_complete(); }
    void on_error(const Error& error) override { c_.reject(error.code, error.message); }

   private:
    Http1ServerConnection& c_;
  };
  enum class Wait { none, idle, header };

  Http1ServerConnection(std::unique_ptr<net::TcpConnection> connection,
                        http::ExchangeFactory& factory, http::DownstreamInfo info,
                        const Http1Options& options, const DownstreamMetrics& metrics);

  // net::TcpConnection::Handler
  void on_data(const char* data, size_t length) override;
  void on_eof() override;
  void on_error(const Error& error) override;
  void on_write_high_water() override;
  void on_write_drained() override;
  void on_closed() override;

  // Decoder events, from inside decoder_.feed().
  void on_request_head(trellis::http::RequestHead&& head, const http1::MessageInfo& info);
  void on_request_body(const char* data, size_t len);
  void on_request_trailers(trellis::http::HeaderMap&& trailers);
  void on_request_complete();

  // Called by Stream on behalf of the exchange.
  void send_head(Stream& s, trellis::http::ResponseHead&& head, bool end_stream);
  void send_data(Stream& s, std::string_view data, bool end_stream);
  void send_trailers(Stream& s, trellis::http::HeaderMap&& trailers);
  void reset_from_exchange(Stream& s);
  void pause_body(Stream& s);
  void resume_body(Stream& s);

  void send_interim(Stream& s, trellis::http::ResponseHead&& head);
  void send_upgrade(Stream& s, trellis::http::ResponseHead&& head, bool end_stream);
  void maybe_send_continue(Stream& s);
  void end_response(Stream& s);
  void end_tunnel_server_side();
  void maybe_end_tunnel();
  // The exchange broke the response protocol (bad head, wrong order, body
  // longer or shorter than announced): log it and abort the connection.
  void exchange_misuse(Stream& s, std::string_view what);

  // Decodes (or tunnels) buffered and `fresh` bytes as far as the state allows.
  void advance(std::string_view fresh);
  // Tunnel mode: hands buffered and `fresh` bytes to the exchange.
  void pump_tunnel(std::string_view& fresh);
  void update_reading();
  void arm_wait(Wait wait);
  void on_wait_timeout();
  void on_kick();
  void kick();

  // A malformed request: count it, answer `status` and close.
  void reject(int status, const std::string& message);
  // A local answer with a one-line text body and "Connection: close".
  void write_local_reply(int status, const std::string& message);
  void write(std::string_view bytes);
  // The response ended: the exchange is destroyed on the next kick.
  void retire_stream();
  // The stream ends unfinished; `notify`: the exchange hears on_downstream_reset.
  void reset_stream(bool notify);
  void close_gracefully();
  void abort_connection();

  size_t buffered() const { return input_.size() - input_offset_; }

  std::unique_ptr<net::TcpConnection> connection_;
  http::ExchangeFactory& factory_;
  http::DownstreamInfo info_;
  Http1Options options_;
  const DownstreamMetrics& metrics_;
  DecoderEvents events_;
  http1::RequestDecoder decoder_;

  std::unique_ptr<Stream> stream_;  // the request in progress, until its response ends
  // Streams that ended or were reset, destroyed with their exchanges on the
  // next kick: a later callback, never inside one of the exchange's calls
  // (and no allocation per request, unlike EventLoop::delete_later).
  std::vector<std::unique_ptr<Stream>> retired_;
  std::string input_;               // bytes read and not yet consumed by the decoder
  size_t input_offset_ = 0;
  std::string out_;                 // encode buffer, reused

  bool started_ = false;
  bool peer_eof_ = false;
  bool decoder_finished_ = false;
  bool feed_due_ = false;       // the decoder was resumed: events may be due without new bytes
  bool congested_ = false;      // the socket's write queue is above high water
  bool draining_ = false;
  bool closing_ = false;        // closing or aborted: no more processing
  bool partial_head_ = false;   // bytes of a request head are in, the head is not complete
  bool discarding_ = false;     // dropping the body of a request whose response ended
  uint64_t discarded_ = 0;
  bool tunnel_ = false;         // raw bytes after an accepted Upgrade
  bool tunnel_client_done_ = false;  // the client's EOF went to the exchange
  bool tunnel_server_done_ = false;  // the exchange ended its side
  Wait wait_ = Wait::none;
  // One deadline per kind: each is re-armed with one duration only, so that
  // re-arming per request never moves a pending timer (see event::Deadline).
  event::Deadline header_deadline_;
  event::Deadline idle_deadline_;
  event::TurnTask kick_;        // continues processing on a fresh stack
};

}  // namespace trellis::proxy::downstream
