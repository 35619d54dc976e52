// Sans-IO HTTP/1.1 decoders on llhttp: bytes in, events out. No sockets, no
// timers, no threads. One decoder per connection direction; a decoder is not
// thread-safe and is used from its connection's worker only.
//
// Feeding: feed() returns how many bytes it consumed. Bytes it did not consume
// stay with the caller, who hands them to feed() again once the decoder is
// active (after resume()), or to the next protocol after an upgrade. The
// decoder never copies unconsumed input; it buffers only the parts of a header
// name/value that straddle two feed() calls. After a pause in the middle of a
// message, events for bytes already consumed may still be due: call feed()
// after resume() even with no bytes left (feed(nullptr, 0)).
//
// A decoder stops consuming (feed() returns less than it was given, state()
// says why) when:
//   - paused:   pause() was called, or options.pause_after_message is set and a
//               message completed. resume() continues.
//   - upgraded: a request with Upgrade or CONNECT, a 101 response, or a 2xx to
//               CONNECT completed; the bytes after it belong to the tunnel.
//               resume() continues with HTTP when the upgrade was refused.
//   - closed:   the message just completed ends the connection (no keep-alive,
//               or a body delimited by EOF), or finish() was called.
//   - failed:   on_error was delivered; the connection must be closed after
//               answering error().code (request side).
//
// Handlers are non-owning references that must outlive the decoder. A handler
// may call pause() from any callback (it takes effect after that event); it
// must not call feed()/finish() or destroy the decoder from a callback.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "common/base/result.h"
#include "common/http/message.h"

namespace trellis::http1 {

// Defaults close to Envoy's (100 headers, 60 KiB) so the sidecar does not
// refuse what the app's clients and servers accept from each other without it.
struct Limits {
  // Header (and, separately, trailer) section: names + values as received
  // (before OWS trimming), counted while streaming like
  // http::HeaderMap::byte_size(); a response's reason phrase counts too.
  // Exceeding it → 431; nothing beyond it is ever buffered.
  size_t max_header_bytes = 64 * 1024;
  size_t max_header_count = 100;  // per section; → 431
  // Request target (the URL of the request line). Exceeding it → 414.
  size_t max_target_bytes = 16 * 1024;
  // Chunk extensions carry nothing we use; bounding them stops a peer from
  // making us parse an endless chunk header (same limit as Node's fix for
  // CVE-2024-22019). Exceeding it → 400.
  size_t max_chunk_extension_bytes = 16 * 1024;
  // Body bytes of one message; unset means unbounded. Exceeding it → 413.
  std::optional<uint64_t> max_body_bytes;
};

struct DecoderOptions {
  Limits limits;
  // Stop after every complete message so a proxy can serve pipelined requests
  // one at a time: feed() returns the bytes up to the message's end and the
  // decoder is paused until resume().
  bool pause_after_message = false;
};

enum class BodyFraming {
  none,            // no body follows the head
  content_length,  // exactly *content_length bytes follow
  chunked,         // chunked transfer coding
  until_close,     // response body delimited by connection close (finish())
};

struct MessageInfo {
  BodyFraming body = BodyFraming::none;
  // The Content-Length field's value, also when no body follows it (a
  // response to HEAD, a 304): a proxy forwards it unchanged.
  std::optional<uint64_t> content_length;
  // The connection stays open for another message after this one (HTTP/1.1
  // unless "Connection: close", HTTP/1.0 only with "Connection: keep-alive",
  // never after a body delimited by close).
  bool keep_alive = true;
  // Request: Upgrade (with "Connection: upgrade") or CONNECT was asked for.
  // Response: 101, or 2xx to CONNECT. The decoder stops after this message.
  bool upgrade = false;
  // Request: HTTP/1.1 with "Expect: 100-continue".
  bool expect_continue = false;

  bool chunked() const { return body == BodyFraming::chunked; }
  bool has_body() const {
    return body == BodyFraming::chunked || body == BodyFraming::until_close ||
           (body == BodyFraming::content_length && content_length.value_or(0) > 0);
  }
};

// Events shared by both directions, in wire order for each message:
// head, body*, trailers?, complete — or error, after which nothing follows.
class MessageHandler {
 public:
  // A slice of the body, pointing into the buffer given to feed(): valid only
  // during the call. Chunk framing is removed.
  virtual void on_body(const char* data, size_t len) = 0;
  // Chunked trailers; called only when the trailer section is not empty.
  virtual void on_trailers(http::HeaderMap&& trailers) = 0;
  virtual void on_message_complete() = 0;
  // error.code is the HTTP status to answer: 400, 413, 414, 431, 501 or 505 on
  // the request side; always 502 on the response side (the upstream broke).
  virtual void on_error(const Error& error) = 0;

 protected:
  ~MessageHandler() = default;
};

class RequestHandler : public MessageHandler {
 public:
  // The Host header is in head.authority, never in head.headers. An
  // absolute-form target is split into scheme, authority and origin-form
  // target; a CONNECT target is the authority and head.target is empty.
  virtual void on_head(http::RequestHead&& head, const MessageInfo& info) = 0;

 protected:
  ~RequestHandler() = default;
};

class ResponseHandler : public MessageHandler {
 public:
  // 1xx other than 101 (100 Continue, 103 Early Hints, ...): reported here and
  // followed by the final response to the same request.
  virtual void on_interim(http::ResponseHead&& head) = 0;
  virtual void on_head(http::ResponseHead&& head, const MessageInfo& info) = 0;

 protected:
  ~ResponseHandler() = default;
};

enum class DecoderState { active, paused, upgraded, closed, failed };

std::string_view decoder_state_name(DecoderState s);

namespace detail {
class Parser;  // the llhttp-driven core shared by both decoders (decoder.cc)
}

// Server side: decodes requests from a client.
class RequestDecoder {
 public:
  explicit RequestDecoder(RequestHandler& handler, const DecoderOptions& options = {});
  ~RequestDecoder();
  RequestDecoder(const RequestDecoder&) = delete;
  RequestDecoder& operator=(const RequestDecoder&) = delete;

  // Consumes a prefix of data (see the file comment); returns its length.
  size_t feed(const char* data, size_t len);
  size_t feed(std::string_view data) { return feed(data.data(), data.size()); }
  // The peer closed its sending side: delivers events still due for consumed
  // bytes (even if paused), then fails a request that is cut short; the
  // decoder is closed afterwards.
  void finish();
  void pause();
  void resume();
  DecoderState state() const;
  // The error delivered to on_error; only valid when state() == failed.
  const Error& error() const;

 private:
  std::unique_ptr<detail::Parser> parser_;
};

// Client side: decodes responses from a server. A response's framing depends
// on the request it answers (HEAD, CONNECT), so the caller registers every
// request it sends, in order, with expect_response(); bytes that arrive with
// no request outstanding fail with 502.
class ResponseDecoder {
 public:
  explicit ResponseDecoder(ResponseHandler& handler, const DecoderOptions& options = {});
  ~ResponseDecoder();
  ResponseDecoder(const ResponseDecoder&) = delete;
  ResponseDecoder& operator=(const ResponseDecoder&) = delete;

  // Registers a request sent on this connection (its method decides framing).
  void expect_response(std::string_view method);
  // Requests sent whose final response has not completed yet.
  size_t outstanding() const;

  size_t feed(const char* data, size_t len);
  size_t feed(std::string_view data) { return feed(data.data(), data.size()); }
  // Connection EOF: delivers events still due for consumed bytes (even if
  // paused), completes a body delimited by close, fails a response cut short
  // or a request still waiting for its response; the decoder is closed after.
  void finish();
  void pause();
  void resume();
  DecoderState state() const;
  const Error& error() const;

 private:
  std::unique_ptr<detail::Parser> parser_;
};

}  // namespace trellis::http1
