#include "common/http1/encoder.h"

#include <cassert>
#include <charconv>

#include "common/http1/syntax.h"

namespace trellis::http1 {
namespace {

Error encode_error(std::string message) { return Error{std::move(message), 500}; }

void append_number(uint64_t n, int base, std::string& out) {
  char buf[20];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), n, base);
  (void)ec;  // 20 digits hold any uint64_t
  out.append(buf, static_cast<size_t>(end - buf));
}

// Fields the encoder writes itself (framing from Framing, Host from the
// authority) and therefore never copies from a header map.
bool is_owned_field(std::string_view name) {
  return http::iequals(name, "content-length") || http::iequals(name, "transfer-encoding") ||
         http::iequals(name, "host");
}

Status append_fields(const http::HeaderMap& fields, std::string_view what, std::string& out) {
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
    out.append(f.name).append(": ").append(f.value).append("\r\n");
  }
  return ok_status();
}

Status append_framing(const Framing& framing, http::Version version, std::string& out) {
  switch (framing.kind) {
    case Framing::Kind::none:
    case Framing::Kind::close_delimited:
      return ok_status();
    case Framing::Kind::content_length:
      out.append("Content-Length: ");
      append_number(framing.length, 10, out);
      out.append("\r\n");
      return ok_status();
    case Framing::Kind::chunked:
      if (version == http::Version::http10) {
        return encode_error("framing: chunked needs HTTP/1.1");
      }
      out.append("Transfer-Encoding: chunked\r\n");
      return ok_status();
  }
  return ok_status();
}

std::string_view version_text(http::Version v) {
  return v == http::Version::http10 ? "HTTP/1.0" : "HTTP/1.1";
}

size_t estimated_size(const http::HeaderMap& fields) {
  return fields.byte_size() + 4 * fields.size() + 96;
}

// Runs `encode`, leaving `out` as it was when it fails.
template <typename F>
Status transactional(std::string& out, F&& encode) {
  size_t mark = out.size();
  Status s = encode();
  if (!s.ok()) out.resize(mark);
  return s;
}

Status encode_request_head_impl(const http::RequestHead& head, const Framing& framing,
                                std::string& out) {
  if (!is_token(head.method)) return encode_error("method: not a token");
  bool connect = head.method == "CONNECT";
  if (connect) {
    if (!is_authority(head.authority)) return encode_error("authority: not host[:port]");
  } else {
    if (head.target.empty()) return encode_error("target: empty");
    for (char c : head.target) {
      if (!is_target_char(c)) return encode_error("target: invalid character");
    }
    if (head.target.front() != '/' && head.target != "*") {
      return encode_error("target: not origin-form or '*'");
    }
    if (head.target == "*" && head.method != "OPTIONS") {
      return encode_error("target: '*' is for OPTIONS only");
    }
    if (!head.authority.empty() && !is_authority(head.authority)) {
      return encode_error("authority: not host[:port]");
    }
  }
  if (framing.kind == Framing::Kind::close_delimited) {
    return encode_error("framing: a request body cannot be delimited by close");
  }
  out.reserve(out.size() + estimated_size(head.headers) + head.method.size() +
              head.target.size() + 2 * head.authority.size());
  out.append(head.method).append(" ");
  out.append(connect ? head.authority : head.target).append(" ");
  out.append(version_text(head.version)).append("\r\n");
  // HTTP/1.1 requires Host, empty when the target has no authority (RFC 9112 §3.2).
  if (!head.authority.empty() || head.version != http::Version::http10) {
    out.append("Host: ").append(head.authority).append("\r\n");
  }
  if (Status s = append_fields(head.headers, "headers", out); !s.ok()) return s;
  if (Status s = append_framing(framing, head.version, out); !s.ok()) return s;
  out.append("\r\n");
  return ok_status();
}

Status encode_response_head_impl(const http::ResponseHead& head, const Framing& framing,
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
  out.reserve(out.size() + estimated_size(head.headers) + reason.size());
  out.append(version_text(head.version)).append(" ");
  append_number(static_cast<uint64_t>(head.status), 10, out);
  out.append(" ").append(reason).append("\r\n");
  if (Status s = append_fields(head.headers, "headers", out); !s.ok()) return s;
  if (Status s = append_framing(framing, head.version, out); !s.ok()) return s;
  if (framing.kind == Framing::Kind::close_delimited) {
    bool announced = false;
    head.headers.for_each_value("connection", [&](std::string_view v) {
      announced = announced || has_token(v, "close");
    });
    if (!announced) out.append("Connection: close\r\n");
  }
  out.append("\r\n");
  return ok_status();
}

}  // namespace

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

Status encode_request_head(const http::RequestHead& head, const Framing& framing,
                           std::string& out) {
  return transactional(out, [&] { return encode_request_head_impl(head, framing, out); });
}

Status encode_response_head(const http::ResponseHead& head, const Framing& framing,
                            std::string& out) {
  return transactional(out, [&] { return encode_response_head_impl(head, framing, out); });
}

void encode_continue(std::string& out) { out.append("HTTP/1.1 100 Continue\r\n\r\n"); }

void encode_chunk_header(uint64_t size, std::string& out) {
  assert(size > 0);
  append_number(size, 16, out);
  out.append("\r\n");
}

void encode_chunk(std::string_view data, std::string& out) {
  if (data.empty()) return;
  out.reserve(out.size() + data.size() + 20);
  encode_chunk_header(data.size(), out);
  out.append(data).append(kChunkEnd);
}

Status encode_last_chunk(const http::HeaderMap* trailers, std::string& out) {
  return transactional(out, [&]() -> Status {
    out.append("0\r\n");
    if (trailers != nullptr) {
      if (Status s = append_fields(*trailers, "trailers", out); !s.ok()) return s;
    }
    out.append("\r\n");
    return ok_status();
  });
}

}  // namespace trellis::http1
