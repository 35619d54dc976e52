#include "common/http1/encoder.h"

#include <cassert>
#include <charconv>
#include <cstring>

#include "common/http1/syntax.h"

namespace trellis::http1 {
namespace {

Error encode_error(std::string message) { return Error{std::move(message), 500}; }

// Writes into space already added to the output: one memcpy per piece
// instead of a std::string::append call.
class Cursor {
 public:
  explicit Cursor(char* p) : p_(p) {}
  Cursor& put(std::string_view s) {
    if (s.empty()) return *this;  // an empty view may have no data() to copy from
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
    return *this;
  }
  Cursor& put_number(uint64_t n, int base) {
    p_ = std::to_chars(p_, p_ + kMaxDigits, n, base).ptr;  // 20 digits hold any uint64_t
    return *this;
  }
  char* pos() const { return p_; }

  static constexpr size_t kMaxDigits = 20;

 private:
  char* p_;
};

// Grows `out` by an upper bound of what the encoding writes; finish() cuts
// it to what was written, abandon() back to where it was.
class Reservation {
 public:
  Reservation(std::string& out, size_t bound) : out_(out), mark_(out.size()) {
    out.resize(mark_ + bound);
  }
  Cursor cursor() { return Cursor(&out_[mark_]); }
  void finish(const Cursor& c) { out_.resize(static_cast<size_t>(c.pos() - out_.data())); }
  void abandon() { out_.resize(mark_); }

 private:
  std::string& out_;
  size_t mark_;
};

// Fields the encoder writes itself (framing from Framing, Host from the
// authority) and therefore never copies from a header map.
bool is_owned_field(std::string_view name) {
  switch (name.size()) {
    case 4: return http::iequals(name, "host");
    case 14: return http::iequals(name, "content-length");
    case 17: return http::iequals(name, "transfer-encoding");
    default: return false;
  }
}

// What append_fields() may write at most.
size_t fields_bound(const http::HeaderMap& fields) {
  return fields.byte_size() + 4 * fields.size();
}

Status append_fields(const http::HeaderMap& fields, std::string_view what, Cursor& out) {
  for (size_t i = 0; i < fields.size(); ++i) {
    const http::Header& f = fields[i];
    if (!is_token(f.name)) {
      return encode_error(std::string(what) + "[" + std::to_string(i) + "].name: not a token");
    }
    if (!is_field_value(f.value)) {
      return encode_error(std::string(what) + "[" + std::to_string(i) +
                          "].value: invalid character");
    }
    if (is_owned_field(f.name)) continue;
    out.put(f.name).put(": ").put(f.value).put("\r\n");
  }
  return ok_status();
}

constexpr std::string_view kContentLength = "Content-Length: ";
constexpr std::string_view kChunked = "Transfer-Encoding: chunked\r\n";
constexpr size_t kFramingBound = kContentLength.size() + Cursor::kMaxDigits + 2;
static_assert(kChunked.size() <= kFramingBound);

Status check_framing(const Framing& framing, http::Version version) {
  if (framing.kind == Framing::Kind::chunked && version == http::Version::http10) {
    return encode_error("framing: chunked needs HTTP/1.1");
  }
  return ok_status();
}

void append_framing(const Framing& framing, Cursor& out) {
  switch (framing.kind) {
    case Framing::Kind::none:
    case Framing::Kind::close_delimited:
      return;
    case Framing::Kind::content_length:
      out.put(kContentLength).put_number(framing.length, 10).put("\r\n");
      return;
    case Framing::Kind::chunked:
      out.put(kChunked);
      return;
  }
}

std::string_view version_text(http::Version v) {
  return v == http::Version::http10 ? "HTTP/1.0" : "HTTP/1.1";
}

// After the start line: the fields, the framing, `extra` (a whole field
// line or nothing) and the blank line. On failure `out` is as it was; field
// errors are reported before framing errors.
Status finish_head(const http::HeaderMap& fields, const Framing& framing, http::Version version,
                   std::string_view extra, Reservation& r, Cursor& c) {
  Status s = append_fields(fields, "headers", c);
  if (s.ok()) s = check_framing(framing, version);
  if (!s.ok()) {
    r.abandon();
    return s;
  }
  append_framing(framing, c);
  c.put(extra).put("\r\n");
  r.finish(c);
  return ok_status();
}

}  // namespace

Status encode_request_head(const http::RequestHead& head, const Framing& framing,
                           std::string& out) {
  if (!is_token(head.method)) return encode_error("method: not a token");
  std::string_view method = head.method;
  std::string_view target = head.target;
  bool connect = method == "CONNECT";
  if (connect) {
    if (!is_authority(head.authority)) return encode_error("authority: not host[:port]");
  } else {
    if (target.empty()) return encode_error("target: empty");
    for (char c : target) {
      if (!is_target_char(c)) return encode_error("target: invalid character");
    }
    if (target.front() != '/' && target != "*") {
      return encode_error("target: not origin-form or '*'");
    }
    if (target == "*" && method != "OPTIONS") {
      return encode_error("target: '*' is for OPTIONS only");
    }
    if (!head.authority.empty() && !is_authority(head.authority)) {
      return encode_error("authority: not host[:port]");
    }
  }
  if (framing.kind == Framing::Kind::close_delimited) {
    return encode_error("framing: a request body cannot be delimited by close");
  }
  if (connect) target = head.authority;
  std::string_view host_prefix = "Host: ";
  size_t bound = head.method.size() + target.size() + 12 + host_prefix.size() +
                 head.authority.size() + 2 + fields_bound(head.headers) + kFramingBound + 2;
  Reservation r(out, bound);
  Cursor c = r.cursor();
  c.put(head.method).put(" ").put(target).put(" ").put(version_text(head.version)).put("\r\n");
  // HTTP/1.1 requires Host, empty when the target has no authority (RFC 9112 §3.2).
  if (!head.authority.empty() || head.version != http::Version::http10) {
    c.put(host_prefix).put(head.authority).put("\r\n");
  }
  return finish_head(head.headers, framing, head.version, {}, r, c);
}

Status encode_response_head(const http::ResponseHead& head, const Framing& framing,
                            std::string& out) {
  if (head.status < 100 || head.status > 599) {
    return encode_error("status: " + std::to_string(head.status) + " is not in 100..599");
  }
  std::string_view reason = head.reason.empty() ? http::reason_phrase(head.status)
                                                : std::string_view(head.reason);
  if (!is_reason_phrase(reason)) return encode_error("reason: invalid character");
  bool bodiless = head.status < 200 || head.status == 204;
  if (bodiless && framing.kind != Framing::Kind::none) {
    return encode_error("framing: status " + std::to_string(head.status) + " has no body");
  }
  if (head.status == 304 && framing.kind != Framing::Kind::none &&
      framing.kind != Framing::Kind::content_length) {
    return encode_error("framing: status 304 has no body");
  }
  bool announce_close = false;
  if (framing.kind == Framing::Kind::close_delimited) {
    announce_close = true;
    head.headers.for_each_value("connection", [&](std::string_view v) {
      announce_close = announce_close && !has_token(v, "close");
    });
  }
  constexpr std::string_view kClose = "Connection: close\r\n";
  size_t bound = 16 + reason.size() + fields_bound(head.headers) + kFramingBound +
                 kClose.size() + 2;
  Reservation r(out, bound);
  Cursor c = r.cursor();
  c.put(version_text(head.version)).put(" ");
  c.put_number(static_cast<uint64_t>(head.status), 10).put(" ").put(reason).put("\r\n");
  return finish_head(head.headers, framing, head.version,
                     announce_close ? kClose : std::string_view(), r, c);
}

Framing Framing::of(const MessageInfo& info) {
  switch (info.body) {
    case BodyFraming::none:
      return info.content_length ? content_length(*info.content_length) : no_body();
    case BodyFraming::content_length:
      return content_length(info.content_length.value_or(0));
    case BodyFraming::chunked:
      return chunked();
    case BodyFraming::until_close:
      return close_delimited();
  }
  return no_body();
}

void encode_continue(std::string& out) { out.append("HTTP/1.1 100 Continue\r\n\r\n"); }

void encode_chunk_header(uint64_t size, std::string& out) {
  assert(size > 0);
  Reservation r(out, Cursor::kMaxDigits + 2);
  Cursor c = r.cursor();
  c.put_number(size, 16).put("\r\n");
  r.finish(c);
}

void encode_chunk(std::string_view data, std::string& out) {
  if (data.empty()) return;
  Reservation r(out, Cursor::kMaxDigits + 2 + data.size() + kChunkEnd.size());
  Cursor c = r.cursor();
  c.put_number(data.size(), 16).put("\r\n").put(data).put(kChunkEnd);
  r.finish(c);
}

Status encode_last_chunk(const http::HeaderMap* trailers, std::string& out) {
  Reservation r(out, 5 + (trailers != nullptr ? fields_bound(*trailers) : 0));
  Cursor c = r.cursor();
  c.put("0\r\n");
  if (trailers != nullptr) {
    if (Status s = append_fields(*trailers, "trailers", c); !s.ok()) {
      r.abandon();
      return s;
    }
  }
  c.put("\r\n");
  r.finish(c);
  return ok_status();
}

}  // namespace trellis::http1
