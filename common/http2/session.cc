#include "common/http2/session.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <optional>
#include <vector>

#include "common/http2/block_cache.h"
#include "common/http2/header_block.h"

namespace trellis::http2 {
namespace {

// Largest header list we send when the peer sets no lower limit. nghttp2's
// own cap on an encoded block is set to the same value: an HPACK block is
// never larger than its list size, so a block that passes this check is
// never dropped at send time.
constexpr size_t kMaxSendHeaderList = 256 * 1024;
// send_data() appends to the last queued chunk while it stays below this, so
// many small writes do not become many allocations.
constexpr size_t kCoalesceBytes = 16 * 1024;
// Opaque data of the PING that times the final GOAWAY of a graceful shutdown.
constexpr uint8_t kShutdownPing[8] = {'t', 'r', 'e', 'l', 'l', 'i', 's', 'g'};
constexpr uint32_t kMaxWindow = (1u << 31) - 1;
// Freed nghttp2 blocks a session keeps for its next streams (see block_cache.h).
constexpr size_t kCachedBytesPerSession = 16 * 1024;
// What nghttp2's blocks for one concurrent stream take, about, in the cache.
constexpr size_t kCachedBytesPerStream = 2 * 1024;
// What the cache keeps at least while the session has no open stream.
constexpr size_t kIdleCachedBytes = 4 * 1024;
// Closed streams' objects kept for new ones: enough for as many concurrent
// requests as h2load -m10 or a browser keeps in flight.
constexpr size_t kSpareStreams = 16;
// A header block reserves room for at most this many fields up front.
constexpr size_t kMaxReservedFields = 64;

Status check_range(const char* field, uint64_t value, uint64_t min, uint64_t max) {
  if (value >= min && value <= max) return ok_status();
  return make_error(std::string("http2 config: ") + field + ": " + std::to_string(value) +
                    " is outside [" + std::to_string(min) + ", " + std::to_string(max) + "]");
}

std::string_view view(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

std::string stream_prefix(int32_t stream_id) { return "http2: stream " + std::to_string(stream_id) + ": "; }

// Errors nghttp2_session_mem_recv/mem_send return: the session is unusable.
Error fatal_error(ssize_t rv) {
  switch (rv) {
    case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
      // RFC 9113 §3.4: no GOAWAY is owed to a peer that does not speak HTTP/2.
      return make_error("http2: bad client preface: the peer does not speak HTTP/2",
                        error_code::protocol_error);
    case NGHTTP2_ERR_FLOODED:
      return make_error("http2: flood: the peer sends frames needing replies faster than it reads them",
                        error_code::enhance_your_calm);
    default:
      return make_error(std::string("http2: ") + nghttp2_strerror(static_cast<int>(rv)),
                        error_code::internal_error);
  }
}

}  // namespace

std::string_view error_code_name(uint32_t code) {
  switch (code) {
    case error_code::no_error: return "NO_ERROR";
    case error_code::protocol_error: return "PROTOCOL_ERROR";
    case error_code::internal_error: return "INTERNAL_ERROR";
    case error_code::flow_control_error: return "FLOW_CONTROL_ERROR";
    case error_code::settings_timeout: return "SETTINGS_TIMEOUT";
    case error_code::stream_closed: return "STREAM_CLOSED";
    case error_code::frame_size_error: return "FRAME_SIZE_ERROR";
    case error_code::refused_stream: return "REFUSED_STREAM";
    case error_code::cancel: return "CANCEL";
    case error_code::compression_error: return "COMPRESSION_ERROR";
    case error_code::connect_error: return "CONNECT_ERROR";
    case error_code::enhance_your_calm: return "ENHANCE_YOUR_CALM";
    case error_code::inadequate_security: return "INADEQUATE_SECURITY";
    case error_code::http_1_1_required: return "HTTP_1_1_REQUIRED";
    default: return "unknown";
  }
}

Status validate(const SessionConfig& c) {
  Status s = check_range("max_concurrent_streams", c.max_concurrent_streams, 1, kMaxWindow);
  if (s) s = check_range("initial_stream_window", c.initial_stream_window, 1, kMaxWindow);
  if (s) s = check_range("connection_window", c.connection_window, 65535, kMaxWindow);
  if (s) s = check_range("max_header_list_size", c.max_header_list_size, 1, UINT32_MAX);
  if (s) s = check_range("max_frame_size", c.max_frame_size, 16384, (1u << 24) - 1);
  return s;
}

void SessionHandler::on_request_head(int32_t, http::RequestHead&&, bool) {}
void SessionHandler::on_response_head(int32_t, http::ResponseHead&&, bool) {}
void SessionHandler::on_goaway(int32_t, uint32_t) {}
void SessionHandler::on_stream_error(int32_t, const Error&) {}
void SessionHandler::on_session_error(const Error&) {}

namespace {

// A stream's state apart from its send queue, reset as a whole when the
// Stream object is reused for another stream.
struct StreamState {
  explicit StreamState(int32_t stream_id) : id(stream_id) {}

  struct Trailers {
    http::HeaderMap fields;
    HeaderBlock block;  // points into `fields`
  };

  int32_t id;
  void* user_data = nullptr;
  bool visible = false;              // the handler knows the stream
  bool ignored = false;              // reset (or answered 431): the peer's frames are dropped
  bool error_reported = false;       // on_stream_error was called
  bool closing = false;              // inside on_stream_close
  bool close_reported = false;
  bool final_head_received = false;  // client: a non-1xx response head arrived
  bool head_submitted = false;       // request submitted / final response submitted
  bool head_sent = false;            // our head went out: a client stream is no longer safe to retry
  bool has_body = false;             // a data provider is attached
  bool body_end = false;             // no more send_data(): EOF once the queue drains
  bool deferred = false;             // the data provider said DEFERRED; resume on new data
  // Set when we reset the stream: the handler hears this code even if the
  // peer's END_STREAM lets nghttp2 close the stream normally first.
  std::optional<uint32_t> reset_code;
  size_t queue_offset = 0;           // bytes of queue.front() already sent
  size_t queued = 0;
  size_t unconsumed = 0;             // delivered by on_data, not yet consume()d
  std::unique_ptr<Trailers> trailers;
};

}  // namespace

struct Session::Stream : StreamState {
  using StreamState::StreamState;

  // Ready for a new stream; the queue keeps its storage (a deque allocates
  // even when empty), which is what makes reusing a Stream worthwhile.
  void reuse(int32_t stream_id) {
    static_cast<StreamState&>(*this) = StreamState(stream_id);
    queue.clear();
  }

  std::deque<std::string> queue;
};

// The header block being received. HTTP/2 never interleaves header blocks on
// a connection, so one per session suffices.
struct Session::Block {
  enum class Kind { request, response, trailers };

  void reset(int32_t id, Kind k) {
    stream_id = id;
    kind = k;
    size = 0;
    oversized = false;
    regular_seen = false;
    has_host = false;
    method.clear();
    scheme.clear();
    authority.clear();
    path.clear();
    status.clear();
    host.clear();
    cookie.clear();
    has_cookie = false;
    headers.clear();
    headers.reserve(expected_fields[static_cast<size_t>(k)]);
  }

  // The decoded fields, cookie crumbs joined. Remembers how many there were:
  // the next block of this kind reserves room for as many at once (a peer
  // sends much the same fields every time).
  http::HeaderMap take_headers() {
    if (has_cookie) headers.add("cookie", cookie);
    expected_fields[static_cast<size_t>(kind)] = std::min(headers.size(), kMaxReservedFields);
    return std::move(headers);
  }

  int32_t stream_id = 0;  // 0: not a block we decode
  Kind kind = Kind::request;
  size_t size = 0;
  bool oversized = false;
  bool regular_seen = false;
  bool has_host = false;
  bool has_cookie = false;
  std::string method, scheme, authority, path, status, host, cookie;
  http::HeaderMap headers;
  std::array<size_t, 3> expected_fields{};  // by Kind
};

namespace {

// nghttp2 1.52 names a rejected field only in its error text: "Invalid HTTP
// header field was received: frame type: 1, stream: 3, name: [Foo], value: [x]".
bool split_field_error(std::string_view text, std::string_view& name, std::string_view& value) {
  size_t a = text.find("name: [");
  if (a == std::string_view::npos) return false;
  size_t b = text.find("], value: [", a + 7);
  if (b == std::string_view::npos) return false;
  name = text.substr(a + 7, b - a - 7);
  value = text.substr(b + 11);
  if (!value.empty() && value.back() == ']') value.remove_suffix(1);
  return true;
}

bool is_http_scheme(std::string_view s) { return http::iequals(s, "http") || http::iequals(s, "https"); }

}  // namespace

// nghttp2's C callbacks, with access to the session's internals.
struct Callbacks {
  static Session& self(void* user_data) { return *static_cast<Session*>(user_data); }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    Session& s = self(user_data);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    int32_t id = frame->hd.stream_id;
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      s.open_stream(id);
      s.block_->reset(id, Session::Block::Kind::request);
      return 0;
    }
    Session::Stream* stream = s.find(id);
    if (stream == nullptr) {
      s.block_->reset(0, Session::Block::Kind::trailers);
      return 0;
    }
    bool response = s.config_.role == Role::client && !stream->final_head_received;
    s.block_->reset(id, response ? Session::Block::Kind::response : Session::Block::Kind::trailers);
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
    Session& s = self(user_data);
    Session::Block& b = *s.block_;
    if (frame->hd.type != NGHTTP2_HEADERS || b.stream_id != frame->hd.stream_id || b.oversized) return 0;
    b.size += header_field_size(namelen, valuelen);
    if (b.size > s.config_.max_header_list_size) {
      // Keep decoding (HPACK state must stay in sync) but stop storing.
      b.oversized = true;
      b.headers.clear();
      return 0;
    }
    std::string_view n = view(name, namelen);
    std::string_view v = view(value, valuelen);
    // nghttp2 has validated the field: names are lowercase, pseudo-header
    // fields are known, single, non-empty and come first.
    if (!n.empty() && n[0] == ':') {
      if (n == ":method") b.method.assign(v);
      else if (n == ":scheme") b.scheme.assign(v);
      else if (n == ":authority") b.authority.assign(v);
      else if (n == ":path") b.path.assign(v);
      else if (n == ":status") b.status.assign(v);
      return 0;
    }
    b.regular_seen = true;
    if (b.kind == Session::Block::Kind::request && n == "host") {
      b.host.assign(v);
      b.has_host = true;
    } else if (n == "cookie") {
      if (b.has_cookie) b.cookie += "; ";
      b.cookie += v;
      b.has_cookie = true;
    } else {
      b.headers.add(n, v);
    }
    return 0;
  }

  // Fields nghttp2 would silently drop (bad characters) make the message
  // malformed instead (RFC 9113 §8.2.1): a proxy must not forward a request
  // that differs from what the client sent.
  static int on_invalid_header(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t, const uint8_t*,
                               size_t, uint8_t, void*) {
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }

  static int on_error(nghttp2_session*, int lib_error_code, const char* msg, size_t len, void* user_data) {
    if (lib_error_code == NGHTTP2_ERR_HTTP_HEADER) self(user_data).header_error_.assign(msg, len);
    return 0;
  }

  static int on_invalid_frame_recv(nghttp2_session*, const nghttp2_frame* frame, int lib_error_code,
                                   void* user_data) {
    Session& s = self(user_data);
    switch (lib_error_code) {
      case NGHTTP2_ERR_HTTP_HEADER:
        s.stream_error(frame->hd.stream_id, describe_bad_field(s.header_error_, *s.block_));
        break;
      case NGHTTP2_ERR_HTTP_MESSAGING:
        s.stream_error(frame->hd.stream_id, describe_bad_message(*s.block_, frame->hd.flags));
        break;
      case NGHTTP2_ERR_REFUSED_STREAM:
        ++s.stats_.refused_streams;
        break;
      default:
        s.last_lib_error_ = lib_error_code;  // explains a connection error that follows
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    Session& s = self(user_data);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
        s.on_headers(frame->hd.stream_id, (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
        break;
      case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          Session::Stream* stream = s.find(frame->hd.stream_id);
          if (stream != nullptr && stream->visible && !stream->ignored) {
            s.handler_.on_end_stream(stream->id);
          }
        }
        break;
      case NGHTTP2_GOAWAY:
        s.handler_.on_goaway(frame->goaway.last_stream_id, frame->goaway.error_code);
        break;
      case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && s.shutting_down_ &&
            std::memcmp(frame->ping.opaque_data, kShutdownPing, sizeof(kShutdownPing)) == 0) {
          // A round trip after the notice: every request the peer sent before
          // seeing it has arrived, so the last stream id is final.
          nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session),
                                NGHTTP2_NO_ERROR, nullptr, 0);
        }
        break;
      default:
        break;
    }
    return 0;
  }

  static int on_data_chunk_recv(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                                size_t len, void* user_data) {
    Session& s = self(user_data);
    Session::Stream* stream = s.find(stream_id);
    if (stream == nullptr || !stream->visible || stream->ignored) {
      nghttp2_session_consume(session, stream_id, len);  // nobody will forward it
      return 0;
    }
    stream->unconsumed += len;
    s.handler_.on_data(stream_id, reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    Session& s = self(user_data);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
        if (Session::Stream* stream = s.find(frame->hd.stream_id)) stream->head_sent = true;
        break;
      case NGHTTP2_RST_STREAM: {
        // nghttp2 resets on its own, without a callback, when a body
        // contradicts content-length or DATA precedes the final response.
        Session::Stream* stream = s.find(frame->hd.stream_id);
        if (stream != nullptr && !stream->reset_code && !stream->error_reported &&
            frame->rst_stream.error_code == NGHTTP2_PROTOCOL_ERROR) {
          bool early = s.config_.role == Role::client && !stream->final_head_received;
          s.stream_error(stream->id, early ? "DATA before the final response"
                                           : "body length does not match content-length");
        }
        break;
      }
      case NGHTTP2_GOAWAY:
        if (frame->goaway.error_code != NGHTTP2_NO_ERROR && !s.terminating_) {
          std::string reason(view(frame->goaway.opaque_data, frame->goaway.opaque_data_len));
          if (reason.empty() && s.last_lib_error_ != 0) reason = nghttp2_strerror(s.last_lib_error_);
          std::string message = "http2: connection error " +
                                std::string(error_code_name(frame->goaway.error_code));
          if (!reason.empty()) message += ": " + reason;
          s.goaway_error_ = make_error(std::move(message), static_cast<int>(frame->goaway.error_code));
        }
        break;
      default:
        break;
    }
    return 0;
  }

  static int on_stream_close(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                             void* user_data) {
    Session& s = self(user_data);
    Session::Stream* stream = s.find(stream_id);
    if (stream == nullptr) return 0;
    // Credit for bytes nobody consumed goes back to the connection, or the
    // connection window would shrink with every reset stream.
    if (stream->unconsumed > 0) nghttp2_session_consume_connection(session, stream->unconsumed);
    stream->unconsumed = 0;
    s.queued_bytes_ -= stream->queued;
    if (stream->visible && !stream->close_reported) {
      stream->closing = true;
      stream->close_reported = true;
      s.handler_.on_stream_close(stream_id, stream->reset_code.value_or(error_code));
    }
    s.close_stream(stream_id);
    return 0;
  }

  static ssize_t read_data(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source*, void* user_data) {
    Session& s = self(user_data);
    Session::Stream* stream = s.find(stream_id);
    if (stream == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = 0;
    while (n < length && !stream->queue.empty()) {
      const std::string& front = stream->queue.front();
      size_t take = std::min(length - n, front.size() - stream->queue_offset);
      std::memcpy(buf + n, front.data() + stream->queue_offset, take);
      n += take;
      stream->queue_offset += take;
      if (stream->queue_offset == front.size()) {
        stream->queue.pop_front();
        stream->queue_offset = 0;
      }
    }
    stream->queued -= n;
    s.queued_bytes_ -= n;
    if (stream->queued == 0 && stream->body_end) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (stream->trailers) {
        // Submitting trailers from here is how nghttp2 ends DATA with HEADERS.
        const HeaderBlock& block = stream->trailers->block;
        if (nghttp2_submit_trailer(session, stream_id, block.fields(), block.size()) != 0) {
          return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        stream->trailers.reset();
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      stream->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }

  static std::string describe_bad_field(std::string_view text, const Session::Block& b) {
    std::string_view name, value;
    if (!split_field_error(text, name, value)) return "invalid header field";
    std::string shown = printable(name);
    for (char c : name) {
      if (c >= 'A' && c <= 'Z') return "header name '" + shown + "' is not lowercase";
    }
    if (!name.empty() && name[0] == ':') {
      using Kind = Session::Block::Kind;
      if (b.kind == Kind::trailers) return "pseudo-header field '" + shown + "' in trailers";
      const std::string* seen = nullptr;
      if (b.kind == Kind::request) {
        if (name == ":method") seen = &b.method;
        else if (name == ":scheme") seen = &b.scheme;
        else if (name == ":authority") seen = &b.authority;
        else if (name == ":path") seen = &b.path;
      } else if (name == ":status") {
        seen = &b.status;
      }
      if (seen == nullptr) return "unknown pseudo-header field '" + shown + "'";
      if (b.regular_seen) return "pseudo-header field '" + shown + "' after regular fields";
      if (!seen->empty()) return "repeated '" + shown + "'";
      if (value.empty()) return "empty '" + shown + "'";
      return "invalid '" + shown + "' value";
    }
    if (is_connection_specific(name)) return "connection-specific header field '" + shown + "'";
    if (name == "te") return "te header field other than 'trailers'";
    if (name == "content-length") return "invalid or repeated content-length";
    if (name == "host") return "invalid or repeated host";
    return "invalid header field '" + shown + "'";
  }

  static std::string describe_bad_message(const Session::Block& b, uint8_t frame_flags) {
    using Kind = Session::Block::Kind;
    bool end_stream = (frame_flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (b.kind == Kind::request) {
      if (b.method.empty()) return "request without :method";
      if (b.method == "CONNECT") {
        if (!b.scheme.empty() || !b.path.empty()) return "CONNECT request with :scheme or :path";
        if (b.authority.empty()) return "CONNECT request without :authority";
      } else {
        if (b.scheme.empty()) return "request without :scheme";
        if (b.path.empty()) return "request without :path";
        if (b.authority.empty() && !b.has_host) return "request without :authority or host";
        if (is_http_scheme(b.scheme) && b.path[0] != '/' && !(b.method == "OPTIONS" && b.path == "*")) {
          return "':path' '" + printable(b.path) + "' is not origin-form";
        }
      }
    } else if (b.kind == Kind::response) {
      if (b.status.empty()) return "response without :status";
      if (b.status[0] == '1' && end_stream) return "informational response with END_STREAM";
    } else if (!end_stream) {
      return "trailers without END_STREAM";
    }
    const std::string* length = b.headers.get("content-length");
    if (end_stream && length != nullptr && *length != "0") {
      return "content-length " + printable(*length) + " without a body";
    }
    return "message breaks HTTP/2 rules";
  }
};

Session::Session(const SessionConfig& config, SessionHandler& handler)
    : config_(config),
      handler_(handler),
      memory_(kCachedBytesPerSession),
      block_(std::make_unique<Block>()),
      head_block_(std::make_unique<HeaderBlock>()) {
  spare_streams_.reserve(kSpareStreams);
}

Session::~Session() { nghttp2_session_del(session_); }

Result<std::unique_ptr<Session>> Session::create(const SessionConfig& config, SessionHandler& handler) {
  if (Status s = validate(config); !s) return std::move(s).error();
  std::unique_ptr<Session> session(new Session(config, handler));
  if (Status s = session->init(); !s) return std::move(s).error();
  return Result<std::unique_ptr<Session>>(std::move(session));
}

Status Session::init() {
  nghttp2_session_callbacks* raw_callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&raw_callbacks) != 0) return make_error("http2: out of memory");
  std::unique_ptr<nghttp2_session_callbacks, void (*)(nghttp2_session_callbacks*)> callbacks(
      raw_callbacks, nghttp2_session_callbacks_del);
  nghttp2_session_callbacks_set_on_begin_headers_callback(raw_callbacks, &Callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(raw_callbacks, &Callbacks::on_header);
  nghttp2_session_callbacks_set_on_invalid_header_callback(raw_callbacks, &Callbacks::on_invalid_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(raw_callbacks, &Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(raw_callbacks,
                                                               &Callbacks::on_invalid_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(raw_callbacks, &Callbacks::on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(raw_callbacks, &Callbacks::on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(raw_callbacks, &Callbacks::on_stream_close);
  nghttp2_session_callbacks_set_error_callback2(raw_callbacks, &Callbacks::on_error);

  nghttp2_option* raw_option = nullptr;
  if (nghttp2_option_new(&raw_option) != 0) return make_error("http2: out of memory");
  std::unique_ptr<nghttp2_option, void (*)(nghttp2_option*)> option(raw_option, nghttp2_option_del);
  // Window updates follow consume(), never mere arrival: that is the back-pressure.
  nghttp2_option_set_no_auto_window_update(raw_option, 1);
  nghttp2_option_set_max_send_header_block_length(raw_option, kMaxSendHeaderList);

  nghttp2_mem mem{};
  mem.mem_user_data = &memory_;
  mem.malloc = [](size_t size, void* cache) { return static_cast<BlockCache*>(cache)->allocate(size); };
  mem.free = [](void* block, void* cache) { static_cast<BlockCache*>(cache)->release(block); };
  mem.calloc = [](size_t count, size_t size, void* cache) {
    return static_cast<BlockCache*>(cache)->allocate_zeroed(count, size);
  };
  mem.realloc = [](void* block, size_t size, void* cache) {
    return static_cast<BlockCache*>(cache)->reallocate(block, size);
  };
  // nghttp2 copies `mem`; the cache outlives the session (see ~Session).
  int rv = config_.role == Role::client
               ? nghttp2_session_client_new3(&session_, raw_callbacks, this, raw_option, &mem)
               : nghttp2_session_server_new3(&session_, raw_callbacks, this, raw_option, &mem);
  if (rv != 0) return make_error(std::string("http2: cannot create session: ") + nghttp2_strerror(rv));

  std::vector<nghttp2_settings_entry> settings = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, config_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, config_.initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, config_.max_frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, config_.max_header_list_size},
  };
  if (config_.role == Role::client) settings.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  rv = nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  if (rv == 0 && config_.connection_window > 65535) {
    rv = nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                               static_cast<int32_t>(config_.connection_window));
  }
  if (rv != 0) return make_error(std::string("http2: cannot create session: ") + nghttp2_strerror(rv));
  return ok_status();
}

Session::Stream* Session::find(int32_t stream_id) const {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

Session::Stream& Session::open_stream(int32_t stream_id) {
  peak_open_streams_ = std::max(peak_open_streams_, streams_.size() + 1);
  if (spare_streams_.empty()) {
    return *streams_.emplace(stream_id, std::make_unique<Stream>(stream_id)).first->second;
  }
  StreamMap::node_type node = std::move(spare_streams_.back());
  spare_streams_.pop_back();
  node.key() = stream_id;
  node.mapped()->reuse(stream_id);
  return *streams_.insert(std::move(node)).position->second;
}

void Session::close_stream(int32_t stream_id) {
  StreamMap::node_type node = streams_.extract(stream_id);
  if (!node.empty() && spare_streams_.size() < kSpareStreams) spare_streams_.push_back(std::move(node));
}

void Session::release_idle_memory() {
  if (!streams_.empty()) return;
  // Keep what the largest burst needed: a peer that sends N requests at a
  // time reaches zero open streams between bursts, and must not pay for N
  // new streams each time. The spare streams never outnumber that burst.
  memory_.trim(std::max(kIdleCachedBytes, std::min(kCachedBytesPerSession,
                                                   peak_open_streams_ * kCachedBytesPerStream)));
}

Status Session::not_open(int32_t stream_id) const {
  return make_error(stream_prefix(stream_id) + "not open");
}

Session::Stream* Session::writable(int32_t stream_id) const {
  Stream* s = find(stream_id);
  return s != nullptr && s->visible && !s->ignored && !s->closing ? s : nullptr;
}

Status Session::receive(const char* data, size_t len) {
  if (in_io_) return make_error("http2: receive() called from a handler callback");
  if (failed_) return error_;
  in_io_ = true;
  ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), len);
  // Serializing replies right away is what reveals a connection error: its
  // GOAWAY (and reason) is only visible when it is sent.
  Status status = failed_ ? Status(error_)  // a handler called abort()
                  : rv < 0 ? fail(fatal_error(rv), false)
                           : flush(outbox_);
  in_io_ = false;
  release_idle_memory();
  return status;
}

Status Session::produce(std::string& out) {
  if (in_io_) return make_error("http2: produce() called from a handler callback");
  if (out.empty()) {
    out.swap(outbox_);
  } else {
    out += outbox_;
    outbox_.clear();
  }
  if (failed_) return ok_status();  // a pending GOAWAY was all that was left
  in_io_ = true;
  Status status = flush(out);
  in_io_ = false;
  release_idle_memory();
  return status;
}

Status Session::flush(std::string& out) {
  for (;;) {
    if (failed_) return error_;  // a handler called abort()
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) return fail(fatal_error(n), false);
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  if (goaway_error_) {
    Error error = std::move(*goaway_error_);
    goaway_error_.reset();
    return fail(std::move(error), true);
  }
  return ok_status();
}

Status Session::fail(Error error, bool keep_output) {
  failed_ = true;
  error_ = std::move(error);
  if (!keep_output) outbox_.clear();
  close_streams(static_cast<uint32_t>(error_.code));
  handler_.on_session_error(error_);
  return error_;
}

void Session::close_streams(uint32_t error_code) {
  // These streams did not finish: never report them as closed without error.
  if (error_code == error_code::no_error) error_code = error_code::cancel;
  std::vector<int32_t> ids;
  for (const auto& entry : streams_) {
    if (entry.second->visible && !entry.second->close_reported) ids.push_back(entry.first);
  }
  std::sort(ids.begin(), ids.end());
  for (int32_t id : ids) {
    Stream* s = find(id);
    if (s == nullptr || s->close_reported) continue;
    s->close_reported = true;
    s->closing = true;
    queued_bytes_ -= s->queued;
    s->queued = 0;
    s->queue.clear();
    bool never_sent = config_.role == Role::client && !s->head_sent;
    handler_.on_stream_close(id, never_sent ? error_code::refused_stream : error_code);
  }
}

bool Session::wants_write() const {
  return !outbox_.empty() || (!failed_ && nghttp2_session_want_write(session_) != 0);
}

bool Session::want_read() const { return !failed_ && nghttp2_session_want_read(session_) != 0; }

bool Session::is_closed() const {
  if (!outbox_.empty()) return false;
  return failed_ || (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0);
}

Status Session::check_header_list(const HeaderBlock& block) const {
  uint32_t peer_limit = nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE);
  size_t limit = std::min<size_t>(kMaxSendHeaderList, peer_limit);
  if (block.list_size() <= limit) return ok_status();
  return make_error("http2: header list of " + std::to_string(block.list_size()) +
                    " bytes exceeds the limit of " + std::to_string(limit) + " bytes");
}

Result<int32_t> Session::submit_request(const http::RequestHead& head, bool has_body, void* user_data) {
  if (config_.role != Role::client) return make_error("http2: submit_request() on a server session");
  if (failed_) return error_;
  if (shutting_down_ || nghttp2_session_check_request_allowed(session_) == 0) {
    return make_error("http2: no new streams on this connection: it is going away");
  }
  // nghttp2 copies the fields: the block is free again once this returns.
  HeaderBlock& block = *head_block_;
  if (Status s = block.encode_request(head); !s) return std::move(s).error();
  if (Status s = check_header_list(block); !s) return std::move(s).error();
  nghttp2_data_provider provider{};
  provider.read_callback = &Callbacks::read_data;
  int32_t id = nghttp2_submit_request(session_, nullptr, block.fields(), block.size(),
                                      has_body ? &provider : nullptr, nullptr);
  if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
    return make_error("http2: stream ids exhausted: open a new connection");
  }
  if (id < 0) return make_error(std::string("http2: submit_request: ") + nghttp2_strerror(id));
  Stream& stream = open_stream(id);
  stream.visible = true;
  stream.user_data = user_data;
  stream.head_submitted = true;
  stream.has_body = has_body;
  stream.body_end = !has_body;
  return id;
}

Status Session::submit_response(int32_t stream_id, const http::ResponseHead& head, bool has_body) {
  if (config_.role != Role::server) return make_error("http2: submit_response() on a client session");
  if (failed_) return error_;
  Stream* s = writable(stream_id);
  if (s == nullptr) return not_open(stream_id);
  if (s->head_submitted) return make_error(stream_prefix(stream_id) + "response already submitted");
  HeaderBlock& block = *head_block_;  // free again once nghttp2 has copied the fields
  if (Status st = block.encode_response(head); !st) return st;
  if (Status st = check_header_list(block); !st) return st;
  if (head.status < 200) {
    int rv = nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, stream_id, nullptr, block.fields(),
                                    block.size(), nullptr);
    if (rv != 0) return make_error(stream_prefix(stream_id) + nghttp2_strerror(rv));
    return ok_status();
  }
  nghttp2_data_provider provider{};
  provider.read_callback = &Callbacks::read_data;
  int rv = nghttp2_submit_response(session_, stream_id, block.fields(), block.size(),
                                   has_body ? &provider : nullptr);
  if (rv != 0) return make_error(stream_prefix(stream_id) + nghttp2_strerror(rv));
  s->head_submitted = true;
  s->has_body = has_body;
  s->body_end = !has_body;
  return ok_status();
}

Status Session::check_body_open(const Stream& s) const {
  if (!s.head_submitted) return make_error(stream_prefix(s.id) + "no response submitted");
  if (!s.has_body) return make_error(stream_prefix(s.id) + "the head ended the message (has_body was false)");
  if (s.body_end) return make_error(stream_prefix(s.id) + "the message has already ended");
  return ok_status();
}

void Session::resume(Stream& s) {
  if (!s.deferred) return;
  s.deferred = false;
  nghttp2_session_resume_data(session_, s.id);
}

Status Session::send_data(int32_t stream_id, std::string_view data, bool end_stream) {
  if (failed_) return error_;
  Stream* s = writable(stream_id);
  if (s == nullptr) return not_open(stream_id);
  if (Status st = check_body_open(*s); !st) return st;
  if (!data.empty()) {
    if (!s->queue.empty() && s->queue.back().size() + data.size() <= kCoalesceBytes) {
      s->queue.back().append(data);
    } else {
      s->queue.emplace_back(data);
    }
    s->queued += data.size();
    queued_bytes_ += data.size();
  }
  s->body_end = end_stream;
  resume(*s);
  return ok_status();
}

Status Session::submit_trailers(int32_t stream_id, const http::HeaderMap& trailers) {
  if (failed_) return error_;
  Stream* s = writable(stream_id);
  if (s == nullptr) return not_open(stream_id);
  if (Status st = check_body_open(*s); !st) return st;
  auto pending = std::make_unique<Stream::Trailers>();
  pending->fields = trailers;
  if (Status st = pending->block.encode_trailers(pending->fields); !st) return st;
  if (Status st = check_header_list(pending->block); !st) return st;
  // Nothing left after filtering: a plain end of the body says the same.
  if (pending->block.size() > 0) s->trailers = std::move(pending);
  s->body_end = true;
  resume(*s);
  return ok_status();
}

Status Session::reset_stream(int32_t stream_id, uint32_t error_code) {
  if (failed_) return error_;
  Stream* s = find(stream_id);
  if (s == nullptr || !s->visible || s->closing || s->ignored) return not_open(stream_id);
  int rv = reset(*s, error_code);
  if (rv != 0) return make_error(stream_prefix(stream_id) + nghttp2_strerror(rv));
  return ok_status();
}

int Session::reset(Stream& s, uint32_t error_code) {
  int rv = nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, error_code);
  if (rv != 0) return rv;
  s.reset_code = error_code;
  s.ignored = true;
  queued_bytes_ -= s.queued;
  s.queued = 0;
  s.queue.clear();
  return 0;
}

Status Session::consume(int32_t stream_id, size_t n) {
  if (failed_) return ok_status();  // nobody is sending any more
  Stream* s = find(stream_id);
  if (s == nullptr) return ok_status();  // closed: its credit went back then
  if (n > s->unconsumed) {
    return make_error(stream_prefix(stream_id) + "consume(" + std::to_string(n) + ") exceeds the " +
                      std::to_string(s->unconsumed) + " bytes received and not consumed");
  }
  s->unconsumed -= n;
  int rv = nghttp2_session_consume(session_, stream_id, n);
  if (rv != 0) return make_error(stream_prefix(stream_id) + nghttp2_strerror(rv));
  return ok_status();
}

Status Session::shutdown_gracefully() {
  if (failed_) return error_;
  if (shutting_down_ || terminating_) return ok_status();
  shutting_down_ = true;
  int rv;
  if (config_.role == Role::server) {
    rv = nghttp2_submit_shutdown_notice(session_);
    if (rv == 0) rv = nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, kShutdownPing);
  } else {
    // A client's GOAWAY concerns streams the server opens (none: push is
    // off); its own requests in flight are unaffected.
    rv = nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                               NGHTTP2_NO_ERROR, nullptr, 0);
  }
  if (rv != 0) return make_error(std::string("http2: shutdown: ") + nghttp2_strerror(rv));
  return ok_status();
}

Status Session::terminate(uint32_t error_code) {
  if (failed_) return error_;
  if (terminating_) return ok_status();
  terminating_ = true;
  int rv = nghttp2_session_terminate_session(session_, error_code);
  if (rv != 0) return make_error(std::string("http2: terminate: ") + nghttp2_strerror(rv));
  // nghttp2 stops processing but never closes the streams it abandons.
  close_streams(error_code);
  return ok_status();
}

void Session::abort(uint32_t error_code) {
  if (failed_) return;
  failed_ = true;
  error_ = make_error("http2: connection aborted", static_cast<int>(error_code));
  outbox_.clear();
  close_streams(error_code);
}

Status Session::set_stream_user_data(int32_t stream_id, void* data) {
  Stream* s = find(stream_id);
  if (s == nullptr || !s->visible) return not_open(stream_id);
  s->user_data = data;
  return ok_status();
}

void* Session::stream_user_data(int32_t stream_id) const {
  Stream* s = find(stream_id);
  return s != nullptr && s->visible ? s->user_data : nullptr;
}

size_t Session::queued_bytes(int32_t stream_id) const {
  Stream* s = find(stream_id);
  return s != nullptr ? s->queued : 0;
}

uint32_t Session::peer_max_concurrent_streams() const {
  return nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

void Session::on_headers(int32_t stream_id, bool end_stream) {
  Stream* s = find(stream_id);
  Block& b = *block_;
  if (s == nullptr || b.stream_id != stream_id || s->ignored) return;
  if (b.oversized) {
    reject_oversized(*s, end_stream);
    return;
  }
  switch (b.kind) {
    case Block::Kind::request: {
      if (b.has_host && !b.authority.empty() && !http::iequals(b.host, b.authority)) {
        // RFC 9113 §8.3.1: two different targets make the request malformed;
        // a proxy must not pick one.
        reset(*s, error_code::protocol_error);
        stream_error(stream_id, "host '" + printable(b.host) + "' does not match :authority '" +
                                    printable(b.authority) + "'");
        return;
      }
      http::RequestHead head;
      head.method = std::move(b.method);
      head.scheme = std::move(b.scheme);
      head.authority = b.authority.empty() ? std::move(b.host) : std::move(b.authority);
      head.target = std::move(b.path);
      head.version = http::Version::http2;
      head.headers = b.take_headers();
      s->visible = true;
      handler_.on_request_head(stream_id, std::move(head), end_stream);
      return;
    }
    case Block::Kind::response: {
      http::ResponseHead head;
      head.status = (b.status[0] - '0') * 100 + (b.status[1] - '0') * 10 + (b.status[2] - '0');
      head.version = http::Version::http2;
      head.headers = b.take_headers();
      if (head.status >= 200) s->final_head_received = true;
      handler_.on_response_head(stream_id, std::move(head), end_stream);
      return;
    }
    case Block::Kind::trailers: {
      if (!s->visible) return;
      http::HeaderMap trailers = b.take_headers();
      handler_.on_trailers(stream_id, std::move(trailers));
      return;
    }
  }
}

void Session::reject_oversized(Stream& s, bool end_stream) {
  std::string what = "header list exceeds max_header_list_size (" +
                     std::to_string(config_.max_header_list_size) + " bytes)";
  if (block_->kind == Block::Kind::request) {
    // A 431 tells the client what went wrong; a reset would not.
    static const nghttp2_nv kStatus431 = {const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(":status")),
                                          const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>("431")), 7, 3,
                                          NGHTTP2_NV_FLAG_NONE};
    nghttp2_submit_response(session_, s.id, &kStatus431, 1, nullptr);
    // Stop the upload without error once the response is complete (RFC 9113 §8.1).
    if (!end_stream) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_NO_ERROR);
  } else {
    reset(s, error_code::protocol_error);
  }
  stream_error(s.id, what);
}

void Session::stream_error(int32_t stream_id, const std::string& what) {
  if (Stream* s = find(stream_id)) {
    if (s->error_reported) return;
    s->error_reported = true;
    s->ignored = true;
  }
  ++stats_.malformed_streams;
  handler_.on_stream_error(stream_id,
                           make_error(stream_prefix(stream_id) + what, error_code::protocol_error));
}

}  // namespace trellis::http2
