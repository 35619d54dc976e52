#include "common/http1/decoder.h"

#include <llhttp.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "common/http1/syntax.h"

namespace trellis::http1 {

std::string_view decoder_state_name(DecoderState s) {
  switch (s) {
    case DecoderState::active: return "active";
    case DecoderState::paused: return "paused";
    case DecoderState::upgraded: return "upgraded";
    case DecoderState::closed: return "closed";
    case DecoderState::failed: return "failed";
  }
  return "active";
}

namespace detail {
namespace {

// A header name or value that llhttp may deliver in several pieces: split by a
// feed() boundary or by an obs-fold. While the pieces are adjacent in the
// caller's buffer this only widens a view; it copies when they are not, and
// spill() copies before the caller's buffer goes away at the end of feed().
class SpanAccumulator {
 public:
  void append(const char* at, size_t len) {
    if (!owned_) {
      if (len_ == 0) {
        data_ = at;
        len_ = len;
        return;
      }
      if (data_ + len_ == at) {
        len_ += len;
        return;
      }
      spill();
    }
    buf_.append(at, len);
  }
  void spill() {
    if (owned_ || len_ == 0) return;
    buf_.assign(data_, len_);
    owned_ = true;
  }
  std::string_view view() const {
    return owned_ ? std::string_view(buf_) : std::string_view(data_, len_);
  }
  bool empty() const { return owned_ ? buf_.empty() : len_ == 0; }
  void clear() {
    data_ = nullptr;
    len_ = 0;
    owned_ = false;
    buf_.clear();  // keeps its capacity for the next field
  }

 private:
  const char* data_ = nullptr;
  size_t len_ = 0;
  bool owned_ = false;
  std::string buf_;
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

class Parser {
 public:
  enum class Role : uint8_t { request, response };

  Parser(Role role, MessageHandler& handler, RequestHandler* request_handler,
         ResponseHandler* response_handler, const DecoderOptions& options)
      : role_(role),
        options_(options),
        handler_(handler),
        request_handler_(request_handler),
        response_handler_(response_handler) {
    llhttp_init(&parser_, role == Role::request ? HTTP_REQUEST : HTTP_RESPONSE, &settings());
    parser_.data = this;
  }
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  size_t feed(const char* data, size_t len);
  void finish();
  void pause() { paused_ = true; }
  void resume() {
    paused_ = false;
    if (state_ == DecoderState::upgraded) state_ = DecoderState::active;
  }
  DecoderState state() const {
    return state_ == DecoderState::active && paused_ ? DecoderState::paused : state_;
  }
  const Error& error() const { return error_; }

  void expect_response(std::string_view method) {
    outstanding_.push_back(method == "HEAD"      ? RequestKind::head
                           : method == "CONNECT" ? RequestKind::connect
                                                 : RequestKind::other);
  }
  size_t outstanding() const { return outstanding_.size(); }

 private:
  enum class RequestKind : uint8_t { other, head, connect };
  // Work that needs the parser's position, which llhttp reveals only when a
  // callback pauses it: the callback records what to do and returns
  // HPE_PAUSED, and feed() does it at llhttp_get_error_pos().
  enum class Pending : uint8_t {
    none,              // pause() from on_body
    line_end,          // a line llhttp's lenient build ends without checking LF
    head,              // header section complete
    chunk_header,      // chunk-size line complete
    chunk_complete,    // CRLF after chunk data (or the trailer section's end)
    message_complete,
  };
  enum class Phase : uint8_t { idle, head, body };

  static const llhttp_settings_t& settings();
  static Parser& self(llhttp_t* p) { return *static_cast<Parser*>(p->data); }

  static int cb_message_begin(llhttp_t* p);
  static int cb_method(llhttp_t* p, const char* at, size_t len);
  static int cb_url(llhttp_t* p, const char* at, size_t len);
  static int cb_version(llhttp_t* p, const char* at, size_t len);
  static int cb_version_complete(llhttp_t* p);
  static int cb_status(llhttp_t* p, const char* at, size_t len);
  static int cb_status_complete(llhttp_t* p);
  static int cb_header_field(llhttp_t* p, const char* at, size_t len);
  static int cb_header_field_complete(llhttp_t* p);
  static int cb_header_value(llhttp_t* p, const char* at, size_t len);
  static int cb_header_value_complete(llhttp_t* p);
  static int cb_headers_complete(llhttp_t* p);
  static int cb_chunk_header(llhttp_t* p);
  static int cb_chunk_extension(llhttp_t* p, const char* at, size_t len);
  static int cb_body(llhttp_t* p, const char* at, size_t len);
  static int cb_chunk_complete(llhttp_t* p);
  static int cb_message_complete(llhttp_t* p);

  // The status for an error: `request_status` when decoding requests; a broken
  // response is always answered with 502 by whoever relays it.
  int status_for(int request_status) const {
    return role_ == Role::request ? request_status : 502;
  }
  // Records an error found inside an llhttp callback; feed() reports it.
  int reject(int request_status, std::string message) {
    callback_error_ = Error{std::move(message), status_for(request_status)};
    return HPE_USER;
  }
  int stop_at(Pending what) {
    pending_ = what;
    return HPE_PAUSED;
  }
  void fail(int request_status, std::string message) {
    fail(Error{std::move(message), status_for(request_status)});
  }
  void fail(Error error);

  http::HeaderMap& headers() {
    return role_ == Role::request ? request_head_.headers : response_head_.headers;
  }
  bool count_field_bytes(size_t len) {
    field_bytes_ += len;
    return field_bytes_ <= options_.limits.max_header_bytes || reject_field_bytes();
  }
  bool reject_field_bytes();
  bool bytes_before(const char* pos, size_t n, char* out) const;
  bool line_ended_before(const char* pos) const;
  bool crlf_before(const char* pos) const;

  bool handle(Pending what, const char* pos);
  void begin_message();
  void process_head();
  bool resolve_request_target();
  void process_request_head();
  void process_response_head();
  void complete_message();
  Error error_for(llhttp_errno_t err, const char* pos) const;
  void remember_tail(const char* data, size_t len);

  const Role role_;
  const DecoderOptions options_;
  MessageHandler& handler_;
  RequestHandler* const request_handler_;
  ResponseHandler* const response_handler_;
  llhttp_t parser_{};

  DecoderState state_ = DecoderState::active;
  bool paused_ = false;
  Error error_;
  std::optional<Error> callback_error_;
  Pending pending_ = Pending::none;
  Phase phase_ = Phase::idle;

  // The buffer of the feed() in progress, and the last bytes consumed before
  // it: enough history to look behind a position at a feed() boundary.
  const char* data_ = nullptr;
  const char* data_end_ = nullptr;
  std::array<char, 8> tail_{};
  size_t tail_len_ = 0;

  // The message being decoded.
  http::RequestHead request_head_;
  http::ResponseHead response_head_;
  http::HeaderMap trailers_;
  MessageInfo info_;
  SpanAccumulator name_;
  SpanAccumulator value_;
  std::array<char, 3> version_{};
  size_t version_len_ = 0;
  bool version_started_ = false;
  bool version_complete_ = false;
  bool in_value_ = false;     // between a field's colon and its line end
  bool in_trailers_ = false;  // header callbacks now carry trailer fields
  bool in_chunk_size_line_ = false;
  bool last_chunk_ = false;
  bool interim_ = false;
  bool host_seen_ = false;
  bool content_length_seen_ = false;
  bool transfer_encoding_seen_ = false;
  bool transfer_encoding_chunked_ = true;  // every Transfer-Encoding line says exactly "chunked"
  bool expect_continue_ = false;
  size_t field_bytes_ = 0;
  size_t field_count_ = 0;
  size_t last_field_count_ = 0;  // sizes the next message's HeaderMap up front
  size_t extension_bytes_ = 0;
  uint64_t body_bytes_ = 0;

  std::deque<RequestKind> outstanding_;  // response side: requests awaiting a final response
};

const llhttp_settings_t& Parser::settings() {
  static const llhttp_settings_t kSettings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &Parser::cb_message_begin;
    s.on_method = &Parser::cb_method;
    s.on_url = &Parser::cb_url;
    s.on_version = &Parser::cb_version;
    s.on_version_complete = &Parser::cb_version_complete;
    s.on_status = &Parser::cb_status;
    s.on_status_complete = &Parser::cb_status_complete;
    s.on_header_field = &Parser::cb_header_field;
    s.on_header_field_complete = &Parser::cb_header_field_complete;
    s.on_header_value = &Parser::cb_header_value;
    s.on_header_value_complete = &Parser::cb_header_value_complete;
    s.on_headers_complete = &Parser::cb_headers_complete;
    s.on_chunk_header = &Parser::cb_chunk_header;
    s.on_chunk_extension_name = &Parser::cb_chunk_extension;
    s.on_chunk_extension_value = &Parser::cb_chunk_extension;
    s.on_body = &Parser::cb_body;
    s.on_chunk_complete = &Parser::cb_chunk_complete;
    s.on_message_complete = &Parser::cb_message_complete;
    return s;
  }();
  return kSettings;
}

size_t Parser::feed(const char* data, size_t len) {
  if (state_ != DecoderState::active || paused_) return 0;
  static const char kNoBytes[1] = {0};
  if (data == nullptr) data = kNoBytes;  // llhttp is C: no arithmetic on null
  data_ = data;
  data_end_ = data + len;
  const char* p = data;
  size_t consumed = len;
  for (;;) {
    llhttp_errno_t err = llhttp_execute(&parser_, p, static_cast<size_t>(data_end_ - p));
    if (err == HPE_OK) break;
    const char* pos = llhttp_get_error_pos(&parser_);
    if (err == HPE_PAUSED) {
      llhttp_resume(&parser_);
      if (!handle(std::exchange(pending_, Pending::none), pos)) {
        consumed = static_cast<size_t>(pos - data);
        break;
      }
      p = pos;
      continue;
    }
    if (err == HPE_PAUSED_UPGRADE) {
      // Reached only after resume() following a refused upgrade: go on with HTTP.
      llhttp_resume_after_upgrade(&parser_);
      p = pos;
      continue;
    }
    fail(callback_error_ ? std::move(*callback_error_) : error_for(err, pos));
    consumed = static_cast<size_t>(pos - data);
    break;
  }
  remember_tail(data, consumed);
  name_.spill();
  value_.spill();
  data_ = data_end_ = nullptr;
  return consumed;
}

bool Parser::handle(Pending what, const char* pos) {
  switch (what) {
    case Pending::none:
      return false;
    case Pending::line_end:
      if (!line_ended_before(pos)) fail(400, "malformed line ending");
      break;
    case Pending::chunk_header:
      if (!line_ended_before(pos)) fail(400, "malformed line ending");
      in_chunk_size_line_ = false;
      extension_bytes_ = 0;
      break;
    case Pending::chunk_complete:
      // Chunk data must be followed by exactly CRLF; the last chunk's trailer
      // section ends with an empty line like a header section.
      if (!(last_chunk_ ? line_ended_before(pos) : crlf_before(pos))) {
        fail(400, "malformed line ending");
      }
      in_chunk_size_line_ = !last_chunk_;
      break;
    case Pending::head:
      if (!line_ended_before(pos)) {
        fail(400, "malformed line ending");
      } else {
        process_head();
      }
      break;
    case Pending::message_complete:
      complete_message();
      break;
  }
  return state_ == DecoderState::active && !paused_;
}

void Parser::fail(Error error) {
  if (state_ == DecoderState::failed) return;
  state_ = DecoderState::failed;
  error_ = std::move(error);
  handler_.on_error(error_);
}

bool Parser::bytes_before(const char* pos, size_t n, char* out) const {
  size_t in_feed = static_cast<size_t>(pos - data_);
  if (in_feed >= n) {
    std::memcpy(out, pos - n, n);
    return true;
  }
  if (in_feed + tail_len_ < n) return false;
  for (size_t i = 0; i < n; ++i) {
    ptrdiff_t k = static_cast<ptrdiff_t>(in_feed) - static_cast<ptrdiff_t>(n - i);
    out[i] = k >= 0 ? data_[k] : tail_[static_cast<size_t>(static_cast<ptrdiff_t>(tail_len_) + k)];
  }
  return true;
}

// llhttp as Debian builds it (LLHTTP_STRICT_MODE off) accepts any byte after
// a CR in some places, so "\r\n\rX" could end a header section and a bare CR
// split lines differently than a strict peer would: the request-smuggling
// pattern. Checking the byte before each such line end closes that; a bare LF
// stays accepted wherever llhttp accepts it.
bool Parser::line_ended_before(const char* pos) const {
  char c = 0;
  return bytes_before(pos, 1, &c) && c == '\n';
}

bool Parser::crlf_before(const char* pos) const {
  char c[2] = {0, 0};
  return bytes_before(pos, 2, c) && c[0] == '\r' && c[1] == '\n';
}

void Parser::remember_tail(const char* data, size_t len) {
  if (len >= tail_.size()) {
    std::memcpy(tail_.data(), data + len - tail_.size(), tail_.size());
    tail_len_ = tail_.size();
    return;
  }
  size_t keep = std::min(tail_len_, tail_.size() - len);
  std::memmove(tail_.data(), tail_.data() + tail_len_ - keep, keep);
  if (len > 0) std::memcpy(tail_.data() + keep, data, len);
  tail_len_ = keep + len;
}

bool Parser::reject_field_bytes() {
  reject(431, std::string(in_trailers_ ? "trailer" : "header") + " section exceeds " +
                  std::to_string(options_.limits.max_header_bytes) + " bytes");
  return false;
}

void Parser::begin_message() {
  phase_ = Phase::head;
  if (role_ == Role::request) {
    request_head_.clear();
  } else {
    response_head_.clear();
  }
  headers().reserve(last_field_count_);
  trailers_.clear();
  info_ = MessageInfo{};
  name_.clear();
  value_.clear();
  version_len_ = 0;
  version_started_ = false;
  version_complete_ = false;
  in_value_ = false;
  in_trailers_ = false;
  in_chunk_size_line_ = false;
  last_chunk_ = false;
  interim_ = false;
  host_seen_ = false;
  content_length_seen_ = false;
  transfer_encoding_seen_ = false;
  transfer_encoding_chunked_ = true;
  expect_continue_ = false;
  field_bytes_ = 0;
  field_count_ = 0;
  extension_bytes_ = 0;
  body_bytes_ = 0;
}

int Parser::cb_message_begin(llhttp_t* p) {
  Parser& s = self(p);
  s.begin_message();
  if (s.role_ == Role::response && s.outstanding_.empty()) {
    return s.reject(502, "unexpected response: no request outstanding");
  }
  return 0;
}

int Parser::cb_method(llhttp_t* p, const char* at, size_t len) {
  // llhttp matches methods against a fixed table, so this stays short.
  self(p).request_head_.method.append(at, len);
  return 0;
}

int Parser::cb_url(llhttp_t* p, const char* at, size_t len) {
  Parser& s = self(p);
  std::string& target = s.request_head_.target;
  if (target.size() + len > s.options_.limits.max_target_bytes) {
    return s.reject(414, "request target exceeds " +
                             std::to_string(s.options_.limits.max_target_bytes) + " bytes");
  }
  for (size_t i = 0; i < len; ++i) {
    if (!is_target_char(at[i])) return s.reject(400, "invalid request target");
  }
  target.append(at, len);
  return 0;
}

int Parser::cb_version(llhttp_t* p, const char* at, size_t len) {
  Parser& s = self(p);
  if (!s.version_started_) {
    // llhttp also takes RTSP/ and ICE/ start lines; only HTTP/ is ours.
    s.version_started_ = true;
    char protocol[5];
    if (!s.bytes_before(at, sizeof(protocol), protocol) ||
        std::memcmp(protocol, "HTTP/", sizeof(protocol)) != 0) {
      return s.reject(400, s.role_ == Role::request ? "malformed request line"
                                                     : "malformed status line");
    }
  }
  for (size_t i = 0; i < len && s.version_len_ < s.version_.size(); ++i) {
    s.version_[s.version_len_++] = at[i];
  }
  return 0;
}

int Parser::cb_version_complete(llhttp_t* p) {
  Parser& s = self(p);
  s.version_complete_ = true;
  if (p->http_major != 1 || p->http_minor > 1) {
    return s.reject(505, "unsupported HTTP version " + std::to_string(p->http_major) + "." +
                             std::to_string(p->http_minor));
  }
  return 0;
}

int Parser::cb_status(llhttp_t* p, const char* at, size_t len) {
  Parser& s = self(p);
  if (!s.count_field_bytes(len)) return HPE_USER;
  s.response_head_.reason.append(at, len);
  return 0;
}

int Parser::cb_status_complete(llhttp_t* p) { return self(p).stop_at(Pending::line_end); }

int Parser::cb_header_field(llhttp_t* p, const char* at, size_t len) {
  Parser& s = self(p);
  if (!s.count_field_bytes(len)) return HPE_USER;
  s.name_.append(at, len);
  return 0;
}

int Parser::cb_header_field_complete(llhttp_t* p) {
  Parser& s = self(p);
  if (++s.field_count_ > s.options_.limits.max_header_count) {
    return s.reject(431, "more than " + std::to_string(s.options_.limits.max_header_count) +
                             (s.in_trailers_ ? " trailer fields" : " header fields"));
  }
  std::string_view name = s.name_.view();
  // Strict llhttp (meson.build; no lenient flags set here) lets only tchars
  // into a name, but lets an empty one through. malformed_test.cc guards both.
  if (name.empty()) return s.reject(400, "empty header name");
  if (!s.in_trailers_) {
    // Checked here, before llhttp's own checks, to give each case its message.
    if (http::iequals(name, "content-length")) {
      if (s.content_length_seen_) return s.reject(400, "multiple Content-Length headers");
      if (s.transfer_encoding_seen_) {
        return s.reject(400, "Content-Length and Transfer-Encoding both present");
      }
      s.content_length_seen_ = true;
    } else if (http::iequals(name, "transfer-encoding")) {
      if (s.content_length_seen_) {
        return s.reject(400, "Content-Length and Transfer-Encoding both present");
      }
      s.transfer_encoding_seen_ = true;
    }
  }
  s.in_value_ = true;
  return 0;
}

int Parser::cb_header_value(llhttp_t* p, const char* at, size_t len) {
  Parser& s = self(p);
  if (!s.count_field_bytes(len)) return HPE_USER;
  s.value_.append(at, len);
  return 0;
}

int Parser::cb_header_value_complete(llhttp_t* p) {
  Parser& s = self(p);
  std::string_view name = s.name_.view();
  // Nothing but OWS after the colon: llhttp's lenient build skips this line's
  // LF check, so it is done at the position (see line_ended_before).
  bool unchecked_line_end = s.value_.empty();
  // No is_field_value(): strict llhttp already refuses every control but HTAB
  // (malformed_test.cc guards it), and obs-fold pieces arrive without CRLF.
  std::string_view value = trim_ows(s.value_.view());
  if (s.in_trailers_) {
    s.trailers_.add(name, value);
  } else if (s.role_ == Role::request && http::iequals(name, "host")) {
    if (s.host_seen_) return s.reject(400, "multiple Host headers");
    s.host_seen_ = true;
    s.request_head_.authority.assign(value.data(), value.size());
  } else {
    if (http::iequals(name, "transfer-encoding")) {
      // We relay bodies, re-framed: a coding we would have to undo is refused.
      if (!http::iequals(value, "chunked")) s.transfer_encoding_chunked_ = false;
    } else if (s.role_ == Role::request && http::iequals(name, "expect")) {
      if (http::iequals(value, "100-continue")) s.expect_continue_ = true;
    }
    s.headers().add(name, value);
  }
  s.name_.clear();
  s.value_.clear();
  s.in_value_ = false;
  return unchecked_line_end ? s.stop_at(Pending::line_end) : 0;
}

int Parser::cb_headers_complete(llhttp_t* p) { return self(p).stop_at(Pending::head); }

int Parser::cb_chunk_header(llhttp_t* p) {
  Parser& s = self(p);
  s.last_chunk_ = p->content_length == 0;
  return s.stop_at(Pending::chunk_header);
}

int Parser::cb_chunk_extension(llhttp_t* p, const char*, size_t len) {
  Parser& s = self(p);
  s.extension_bytes_ += len;
  if (s.extension_bytes_ > s.options_.limits.max_chunk_extension_bytes) {
    return s.reject(400, "chunk extensions exceed " +
                             std::to_string(s.options_.limits.max_chunk_extension_bytes) +
                             " bytes");
  }
  return 0;
}

int Parser::cb_body(llhttp_t* p, const char* at, size_t len) {
  Parser& s = self(p);
  const std::optional<uint64_t>& max = s.options_.limits.max_body_bytes;
  if (max && len > *max - s.body_bytes_) {
    // Deliver up to the limit first, so the outcome does not depend on how
    // the body was split across feed() calls.
    size_t allowed = static_cast<size_t>(*max - s.body_bytes_);
    if (allowed > 0) s.handler_.on_body(at, allowed);
    s.body_bytes_ = *max;
    return s.reject(413, "body exceeds " + std::to_string(*max) + " bytes");
  }
  s.body_bytes_ += len;
  s.handler_.on_body(at, len);
  return s.paused_ ? HPE_PAUSED : 0;
}

int Parser::cb_chunk_complete(llhttp_t* p) { return self(p).stop_at(Pending::chunk_complete); }

int Parser::cb_message_complete(llhttp_t* p) {
  return self(p).stop_at(Pending::message_complete);
}

void Parser::process_head() {
  phase_ = Phase::body;
  last_field_count_ = headers().size();
  if (role_ == Role::request) {
    process_request_head();
  } else {
    process_response_head();
  }
}

// Splits absolute-form and authority-form targets so that every consumer sees
// origin-form in `target` and the authority in `authority` (RFC 9112 §3.2).
bool Parser::resolve_request_target() {
  http::RequestHead& h = request_head_;
  if (host_seen_ && !h.authority.empty() && !is_authority(h.authority)) {
    fail(400, "invalid Host header");
    return false;
  }
  std::string& target = h.target;
  if (parser_.method == HTTP_CONNECT) {
    size_t colon = target.rfind(':');
    size_t bracket = target.rfind(']');
    bool has_port = colon != std::string::npos && (bracket == std::string::npos || colon > bracket);
    if (!is_authority(target) || !has_port) {
      fail(400, "invalid CONNECT target");
      return false;
    }
    h.authority = std::move(target);
    target.clear();
    return true;
  }
  if (std::string_view(target) == "*") {
    if (parser_.method == HTTP_OPTIONS) return true;
    fail(400, "invalid request target");
    return false;
  }
  if (!target.empty() && target.front() == '/') return true;
  size_t scheme_end = target.find("://");
  std::string_view scheme = std::string_view(target).substr(0, scheme_end);
  bool https = http::iequals(scheme, "https");
  if (scheme_end == std::string::npos || (!https && !http::iequals(scheme, "http"))) {
    fail(400, "unsupported request target");
    return false;
  }
  std::string_view rest = std::string_view(target).substr(scheme_end + 3);
  size_t path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  if (!is_authority(authority)) {
    fail(400, "invalid request target");
    return false;
  }
  std::string path(path_start == std::string_view::npos ? std::string_view()
                                                      : rest.substr(path_start));
  if (path.empty() || path.front() == '?') path.insert(0, "/");
  // The target's authority wins over Host (RFC 9112 §3.2.2).
  h.scheme = https ? "https" : "http";
  h.authority.assign(authority.data(), authority.size());
  target = std::move(path);
  return true;
}

void Parser::process_request_head() {
  http::RequestHead& h = request_head_;
  h.version = parser_.http_minor == 0 ? http::Version::http10 : http::Version::http11;
  if (h.version == http::Version::http11 && !host_seen_) return fail(400, "missing Host header");
  if (!resolve_request_target()) return;
  if (transfer_encoding_seen_ && !transfer_encoding_chunked_) {
    return fail(501, "unsupported Transfer-Encoding");
  }
  // HTTP/1.0 has no transfer codings: its framing is faulty (RFC 9112 §6.1).
  if (transfer_encoding_seen_ && h.version == http::Version::http10) {
    return fail(400, "Transfer-Encoding in an HTTP/1.0 message");
  }
  MessageInfo& info = info_;
  if (parser_.flags & F_CONTENT_LENGTH) info.content_length = parser_.content_length;
  info.upgrade = parser_.upgrade != 0;
  if (parser_.method == HTTP_CONNECT) {
    info.body = BodyFraming::none;  // llhttp hands everything after the head to the tunnel
  } else if (parser_.flags & F_CHUNKED) {
    info.body = BodyFraming::chunked;
  } else if (info.content_length) {
    info.body = BodyFraming::content_length;
  }
  info.keep_alive = llhttp_should_keep_alive(&parser_) != 0;
  info.expect_continue = expect_continue_ && h.version == http::Version::http11;
  const std::optional<uint64_t>& max = options_.limits.max_body_bytes;
  if (info.body == BodyFraming::content_length && max && *info.content_length > *max) {
    return fail(413, "body exceeds " + std::to_string(*max) + " bytes");
  }
  in_trailers_ = true;
  in_chunk_size_line_ = info.chunked();
  field_bytes_ = 0;
  field_count_ = 0;
  request_handler_->on_head(std::move(h), info);
}

void Parser::process_response_head() {
  http::ResponseHead& h = response_head_;
  int status = parser_.status_code;
  if (status < 100 || status > 599) return fail(502, "invalid status code");
  h.status = status;
  h.version = parser_.http_minor == 0 ? http::Version::http10 : http::Version::http11;
  RequestKind request = outstanding_.front();
  interim_ = status < 200 && status != 101;
  bool tunnel = status == 101 || (request == RequestKind::connect && status / 100 == 2);
  bool no_body = interim_ || tunnel || request == RequestKind::head || status == 204 ||
                 status == 304;
  // What on_headers_complete's return values 1 and 2 would do; we paused
  // instead of returning, to check the section's last line end first.
  if (no_body) parser_.flags |= F_SKIPBODY;
  parser_.upgrade = tunnel ? 1 : 0;

  MessageInfo& info = info_;
  // 1xx and 204 cannot carry Content-Length (RFC 9110 §8.6); one that does is
  // dropped rather than relayed.
  bool length_allowed = status >= 200 && status != 204;
  if ((parser_.flags & F_CONTENT_LENGTH) && length_allowed) {
    info.content_length = parser_.content_length;
  }
  info.upgrade = tunnel;
  if (!no_body) {
    if (transfer_encoding_seen_ && !transfer_encoding_chunked_) {
      return fail(502, "unsupported Transfer-Encoding");
    }
    if (transfer_encoding_seen_ && h.version == http::Version::http10) {
      return fail(502, "Transfer-Encoding in an HTTP/1.0 message");
    }
    if (parser_.flags & F_CHUNKED) {
      info.body = BodyFraming::chunked;
    } else if (info.content_length) {
      info.body = BodyFraming::content_length;
    } else {
      info.body = BodyFraming::until_close;
    }
  }
  info.keep_alive = llhttp_should_keep_alive(&parser_) != 0;
  const std::optional<uint64_t>& max = options_.limits.max_body_bytes;
  if (info.body == BodyFraming::content_length && max && *info.content_length > *max) {
    return fail(502, "body exceeds " + std::to_string(*max) + " bytes");
  }
  in_trailers_ = true;
  in_chunk_size_line_ = info.chunked();
  field_bytes_ = 0;
  field_count_ = 0;
  if (interim_) {
    response_handler_->on_interim(std::move(h));
  } else {
    response_handler_->on_head(std::move(h), info);
  }
}

void Parser::complete_message() {
  phase_ = Phase::idle;
  if (interim_) return;  // the final response to the same request follows
  if (role_ == Role::response) outstanding_.pop_front();
  if (info_.upgrade) {
    state_ = DecoderState::upgraded;
  } else if (!info_.keep_alive) {
    state_ = DecoderState::closed;
  } else if (options_.pause_after_message) {
    paused_ = true;
  }
  if (!trailers_.empty()) handler_.on_trailers(std::move(trailers_));
  trailers_.clear();
  handler_.on_message_complete();
}

void Parser::finish() {
  if (state_ != DecoderState::active) return;
  // First deliver what is due for bytes already consumed: a pause may have
  // held back the end of a message whose last byte arrived.
  paused_ = false;
  feed(nullptr, 0);
  if (state_ != DecoderState::active) return;
  if (phase_ == Phase::idle) {
    if (role_ == Role::response && !outstanding_.empty()) {
      return fail(502, "connection closed before the response arrived");
    }
    state_ = DecoderState::closed;
    return;
  }
  if (phase_ == Phase::body && info_.body == BodyFraming::until_close) {
    phase_ = Phase::idle;
    outstanding_.pop_front();
    state_ = DecoderState::closed;
    handler_.on_message_complete();
    return;
  }
  fail(400, role_ == Role::request ? "connection closed before the request was complete"
                                   : "connection closed before the response was complete");
}

Error Parser::error_for(llhttp_errno_t err, const char* pos) const {
  bool request = role_ == Role::request;
  auto error = [this](int request_status, std::string message) {
    return Error{std::move(message), status_for(request_status)};
  };
  char before = 0;
  bool cr_before = bytes_before(pos, 1, &before) && before == '\r';
  bool at_break = pos >= data_ && pos < data_end_ && (*pos == '\r' || *pos == '\n');
  switch (err) {
    case HPE_INVALID_METHOD:
      return error(400, "invalid method");
    case HPE_INVALID_URL:
      return error(400, "invalid request target");
    case HPE_INVALID_CONSTANT:
      return error(400, request ? "malformed request line" : "malformed status line");
    case HPE_INVALID_VERSION:
      if (version_complete_) {
        return error(400, request ? "malformed request line" : "malformed status line");
      }
      // llhttp refuses well-formed versions it does not know (1.2, 3.0).
      if (version_len_ == 3 && version_[1] == '.' && is_digit(version_[0]) &&
          is_digit(version_[2])) {
        return error(505, "unsupported HTTP version " + std::string(version_.data(), 3));
      }
      return error(400, "malformed HTTP version");
    case HPE_INVALID_HEADER_TOKEN:
      if (at_break || cr_before) return error(400, "malformed line ending");
      return error(400, in_value_ ? "invalid character in header value"
                                  : "invalid character in header name");
    case HPE_INVALID_CONTENT_LENGTH:
    case HPE_UNEXPECTED_CONTENT_LENGTH:
      return error(400, "invalid Content-Length");
    case HPE_INVALID_TRANSFER_ENCODING:
      return error(501, "unsupported Transfer-Encoding");
    case HPE_INVALID_CHUNK_SIZE:
      return error(400, "invalid chunk size");
    case HPE_INVALID_STATUS:
      return error(400, "invalid status code");
    case HPE_STRICT:
      // Also llhttp's code for bad characters in chunk extensions.
      if (in_chunk_size_line_ && !cr_before) return error(400, "invalid chunk extension");
      return error(400, "malformed line ending");
    case HPE_CR_EXPECTED:
    case HPE_LF_EXPECTED:
      return error(400, "malformed line ending");
    case HPE_UNEXPECTED_SPACE:
      return error(400, "whitespace before the first header field");
    case HPE_CLOSED_CONNECTION:
      return error(400, "data after Connection: close");
    case HPE_PAUSED_H2_UPGRADE:
      return error(505, "HTTP/2 connection preface on an HTTP/1 connection");
    default:
      return error(400, request ? "malformed request" : "malformed response");
  }
}

}  // namespace detail

RequestDecoder::RequestDecoder(RequestHandler& handler, const DecoderOptions& options)
    : parser_(std::make_unique<detail::Parser>(detail::Parser::Role::request, handler, &handler,
                                               nullptr, options)) {}
RequestDecoder::~RequestDecoder() = default;
size_t RequestDecoder::feed(const char* data, size_t len) { return parser_->feed(data, len); }
void RequestDecoder::finish() { parser_->finish(); }
void RequestDecoder::pause() { parser_->pause(); }
void RequestDecoder::resume() { parser_->resume(); }
DecoderState RequestDecoder::state() const { return parser_->state(); }
const Error& RequestDecoder::error() const { return parser_->error(); }

ResponseDecoder::ResponseDecoder(ResponseHandler& handler, const DecoderOptions& options)
    : parser_(std::make_unique<detail::Parser>(detail::Parser::Role::response, handler, nullptr,
                                               &handler, options)) {}
ResponseDecoder::~ResponseDecoder() = default;
void ResponseDecoder::expect_response(std::string_view method) {
  parser_->expect_response(method);
}
size_t ResponseDecoder::outstanding() const { return parser_->outstanding(); }
size_t ResponseDecoder::feed(const char* data, size_t len) { return parser_->feed(data, len); }
void ResponseDecoder::finish() { parser_->finish(); }
void ResponseDecoder::pause() { parser_->pause(); }
void ResponseDecoder::resume() { parser_->resume(); }
DecoderState ResponseDecoder::state() const { return parser_->state(); }
const Error& ResponseDecoder::error() const { return parser_->error(); }

}  // namespace trellis::http1
