// Sans-IO HTTP/2 session on nghttp2: bytes in through receive(), bytes out
// through produce(); it never touches a socket, a timer or a loop.
//
//   Session (client or server) ── handler callbacks ──► the owner (proxy, controller, ...)
//        ▲ receive(bytes)                 produce(out) ▼
//                        transport owned by the caller
//
// Streams map onto common/http/message.h: :method/:scheme/:authority/:path are
// RequestHead's method/scheme/authority/target and :status is ResponseHead's
// status. Decoded heads never hold pseudo-header fields or Host (Host becomes
// the authority when :authority is absent; a Host that contradicts
// :authority makes the request malformed), and cookie crumbs are joined
// with "; " (RFC 9113 §8.2.3). Encoding lowercases names and drops
// connection-specific fields (see header_block.h).
//
// Flow control is driven by the application: received DATA counts against the
// windows until consume() says the bytes were forwarded, so a slow consumer
// stalls its sender instead of making anything buffer without bound. Outgoing
// bytes wait in per-stream queues (queued_bytes()) until the peer's windows
// let them out; a proxy pauses reading its source while they are high.
//
// Memory: nghttp2 allocates through a per-session BlockCache (block_cache.h),
// and closed streams' objects are kept for new ones, so that a stream in the
// steady state allocates only the strings of the heads it hands out. Both are
// bounded (16 streams, 16 KiB), and whenever no stream is open the cache is
// trimmed to what the largest burst of streams needed.
//
// Threading: a Session belongs to one thread (one worker loop). Handler
// callbacks run synchronously inside receive(), produce() and the submit
// functions' effects on the next of those; from a callback the handler may
// call every method except receive() and produce(), and must not destroy
// the Session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/base/result.h"
#include "common/http/message.h"
#include "common/http2/block_cache.h"

struct nghttp2_session;

namespace trellis::http2 {

class HeaderBlock;

// HTTP/2 error codes (RFC 9113 §7), as carried by RST_STREAM and GOAWAY.
namespace error_code {
inline constexpr uint32_t no_error = 0x0;
inline constexpr uint32_t protocol_error = 0x1;
inline constexpr uint32_t internal_error = 0x2;
inline constexpr uint32_t flow_control_error = 0x3;
inline constexpr uint32_t settings_timeout = 0x4;
inline constexpr uint32_t stream_closed = 0x5;
inline constexpr uint32_t frame_size_error = 0x6;
inline constexpr uint32_t refused_stream = 0x7;  // not processed at all: safe to retry
inline constexpr uint32_t cancel = 0x8;
inline constexpr uint32_t compression_error = 0x9;
inline constexpr uint32_t connect_error = 0xa;
inline constexpr uint32_t enhance_your_calm = 0xb;
inline constexpr uint32_t inadequate_security = 0xc;
inline constexpr uint32_t http_1_1_required = 0xd;
}  // namespace error_code

// "PROTOCOL_ERROR", ...; "unknown" for codes outside RFC 9113.
std::string_view error_code_name(uint32_t code);

enum class Role { client, server };

// Our side's SETTINGS and receive windows.
struct SessionConfig {
  Role role = Role::server;
  uint32_t max_concurrent_streams = 100;        // streams the peer may open; [1, 2^31-1]
  uint32_t initial_stream_window = 65535;       // per-stream receive window; [1, 2^31-1]
  uint32_t connection_window = 65535;           // connection receive window; [65535, 2^31-1]
  uint32_t max_header_list_size = 64 * 1024;    // per header block, RFC 9113 §6.5.2 accounting
  uint32_t max_frame_size = 16384;              // largest frame we accept; [16384, 2^24-1]
};

// "http2 config: max_frame_size: 1000 is outside [16384, 16777215]".
Status validate(const SessionConfig& config);

// The owner's side of a session. Every stream the handler has seen (server:
// after on_request_head; client: from submit_request) gets exactly one
// on_stream_close, after which its id is forgotten.
class SessionHandler {
 public:
  virtual ~SessionHandler() = default;

  // Server: a request opened `stream_id`. end_stream: the request has no body.
  virtual void on_request_head(int32_t stream_id, http::RequestHead&& head, bool end_stream);
  // Client: a response head. Informational (1xx) heads arrive here too, any
  // number of them and never with end_stream, before the final head.
  virtual void on_response_head(int32_t stream_id, http::ResponseHead&& head, bool end_stream);
  // Body bytes, valid only during the call. They hold flow-control credit until
  // Session::consume() releases it.
  virtual void on_data(int32_t stream_id, const char* data, size_t len) = 0;
  // The peer's trailers; they end its message.
  virtual void on_trailers(int32_t stream_id, http::HeaderMap&& trailers) = 0;
  // The peer ended its message after the body. Not called when a head with
  // end_stream or on_trailers already said so: each message ends exactly once.
  virtual void on_end_stream(int32_t stream_id) = 0;
  // The stream is gone. no_error: both sides finished. refused_stream: the
  // peer (or the connection's end) guarantees it was never processed, so it
  // is safe to retry. Anything else: a reset by either side or the connection.
  virtual void on_stream_close(int32_t stream_id, uint32_t error_code) = 0;
  // The peer sent GOAWAY: streams above last_stream_id are closed with
  // refused_stream right after this call; those below may still complete.
  virtual void on_goaway(int32_t last_stream_id, uint32_t error_code);
  // The peer broke HTTP/2 message rules on one stream (bad or oversized header
  // block); the session has reset that stream (or answered 431) and carries
  // on. For logging and metrics; on_stream_close follows if the stream was seen.
  virtual void on_stream_error(int32_t stream_id, const Error& error);
  // The connection failed (bad input, flood). Called once, after the open
  // streams' on_stream_close and before receive()/produce() return the same
  // error.
  virtual void on_session_error(const Error& error);
};

// Counters for metrics; they only grow.
struct SessionStats {
  uint64_t malformed_streams = 0;  // peer streams reset (or answered 431) for bad header blocks
  uint64_t refused_streams = 0;    // peer streams refused over max_concurrent_streams
};

class Session {
 public:
  // The handler must outlive the session.
  static Result<std::unique_ptr<Session>> create(const SessionConfig& config, SessionHandler& handler);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Feeds bytes read from the transport. Errors are connection errors: the
  // session is failed, a GOAWAY may wait in produce(), and the transport
  // should be closed once it is written. Error::code is the HTTP/2 error code.
  // The replies the input provokes (ACKs, WINDOW_UPDATEs, the body bytes they
  // unblock) are serialized at once and wait for produce(): hand them to the
  // transport before receiving more, so that a peer that sends without
  // reading meets a full write buffer rather than a growing one.
  Status receive(const char* data, size_t len);
  // Appends every frame ready to go to `out`. After a connection error it
  // still hands out the GOAWAY that explains it.
  Status produce(std::string& out);
  bool wants_write() const;
  bool want_read() const;
  // Nothing more to read or write: close the transport.
  bool is_closed() const;

  // Client: opens a stream. has_body false ends the request with its head.
  // Fails after GOAWAY (from either side) and when stream ids run out.
  // The request waits locally while the peer's concurrency limit is reached.
  Result<int32_t> submit_request(const http::RequestHead& head, bool has_body,
                                 void* user_data = nullptr);
  // Server: answers a stream. 1xx heads may precede the final one (has_body
  // is ignored for them).
  Status submit_response(int32_t stream_id, const http::ResponseHead& head, bool has_body);
  // Queues body bytes (copied). end_stream ends the message after them.
  Status send_data(int32_t stream_id, std::string_view data, bool end_stream);
  // Ends the message with trailers once the queued body has gone out.
  Status submit_trailers(int32_t stream_id, const http::HeaderMap& trailers);
  // Sends RST_STREAM; on_stream_close(stream_id, error_code) follows.
  Status reset_stream(int32_t stream_id, uint32_t error_code);
  // Returns credit for `n` bytes received on the stream and forwarded; the
  // peer gets WINDOW_UPDATEs as credit accumulates. Credit for bytes that
  // were never consumed is returned when the stream closes.
  Status consume(int32_t stream_id, size_t n);

  // Graceful GOAWAY: no new streams; streams in flight finish, then
  // is_closed(). A server sends a shutdown notice and a PING now, and the
  // final GOAWAY naming the last stream it took when the PING returns, so
  // requests already on the wire are still served.
  Status shutdown_gracefully();
  // Immediate GOAWAY with error_code; nothing more is read. Streams still
  // open get on_stream_close(error_code, or cancel when it is no_error).
  Status terminate(uint32_t error_code);
  // The transport is gone: nothing is sent any more; streams still open get
  // on_stream_close(error_code, or cancel when it is no_error), except
  // requests that never left, which get refused_stream.
  void abort(uint32_t error_code);

  // Per-stream pointer for the owner; null for unknown streams.
  Status set_stream_user_data(int32_t stream_id, void* data);
  void* stream_user_data(int32_t stream_id) const;
  template <typename T>
  T* stream_data(int32_t stream_id) const {
    return static_cast<T*>(stream_user_data(stream_id));
  }

  // Body bytes queued and not yet handed to the transport.
  size_t queued_bytes(int32_t stream_id) const;
  size_t queued_bytes() const { return queued_bytes_; }
  // Streams not closed yet, including any whose request head is arriving.
  size_t open_streams() const { return streams_.size(); }
  // The peer's SETTINGS_MAX_CONCURRENT_STREAMS (100 until its SETTINGS arrive).
  uint32_t peer_max_concurrent_streams() const;
  const SessionStats& stats() const { return stats_; }
  // What nghttp2 allocated for this session, and what its cache holds.
  const BlockCache::Stats& nghttp2_memory() const { return memory_.stats(); }
  Role role() const { return config_.role; }

 private:
  struct Stream;
  struct Block;
  friend struct Callbacks;

  using StreamMap = std::unordered_map<int32_t, std::unique_ptr<Stream>>;

  Session(const SessionConfig& config, SessionHandler& handler);
  Status init();
  Stream* find(int32_t stream_id) const;
  // Streams are kept in their map nodes after closing, a few of them, and
  // reused: a new stream then allocates nothing.
  Stream& open_stream(int32_t stream_id);
  void close_stream(int32_t stream_id);
  // With no stream open, gives back what the largest burst of streams did not
  // need.
  void release_idle_memory();
  // The stream, if the handler may still send on it.
  Stream* writable(int32_t stream_id) const;
  Status not_open(int32_t stream_id) const;
  Status check_body_open(const Stream& stream) const;
  Status check_header_list(const HeaderBlock& block) const;
  void resume(Stream& stream);
  // Queues RST_STREAM and drops the stream's outgoing bytes; nghttp2's code.
  int reset(Stream& stream, uint32_t error_code);
  // Serializes every ready frame into `out`.
  Status flush(std::string& out);
  // keep_output: a GOAWAY explaining the failure waits in the output.
  Status fail(Error error, bool keep_output);
  void close_streams(uint32_t error_code);
  void on_headers(int32_t stream_id, bool end_stream);
  void reject_oversized(Stream& stream, bool end_stream);
  void stream_error(int32_t stream_id, const std::string& what);

  SessionConfig config_;
  SessionHandler& handler_;
  // nghttp2's heap; freed after session_ (~Session deletes session_ first).
  BlockCache memory_;
  nghttp2_session* session_ = nullptr;
  StreamMap streams_;
  std::vector<StreamMap::node_type> spare_streams_;  // closed streams, for reuse
  size_t peak_open_streams_ = 0;  // the most streams ever open at once
  std::unique_ptr<Block> block_;  // the header block being received
  std::unique_ptr<HeaderBlock> head_block_;  // encodes the heads we submit
  std::string outbox_;            // frames serialized by receive(), handed out by produce()
  size_t queued_bytes_ = 0;
  SessionStats stats_;
  std::string header_error_;      // nghttp2's text for the header field it just rejected
  int last_lib_error_ = 0;        // nghttp2's reason for the last invalid frame
  bool in_io_ = false;            // inside receive() or produce()
  bool terminating_ = false;      // terminate() was called: its GOAWAY is not an error
  bool shutting_down_ = false;
  bool failed_ = false;
  Error error_;                   // why the session failed
  std::optional<Error> goaway_error_;  // a GOAWAY we sent for a connection error
};

}  // namespace trellis::http2
