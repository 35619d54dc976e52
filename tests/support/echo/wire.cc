#include "tests/support/echo/wire.h"

#include <cstdio>
#include <limits>

#include "common/http1/syntax.h"

namespace trellis::support::echo {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Error duration_error(std::string_view text, std::string_view reason) {
  return make_error("invalid duration '" + std::string(text) + "': " + std::string(reason));
}

// Nanoseconds per unit, 0 for an unknown unit.
uint64_t unit_nanos(std::string_view unit) {
  if (unit == "ns") return 1;
  if (unit == "us" || unit == "\xc2\xb5s" || unit == "\xce\xbcs") return 1000;  // µs (U+00B5), μs (U+03BC)
  if (unit == "ms") return 1000 * 1000;
  if (unit == "s") return 1000 * 1000 * 1000;
  if (unit == "m") return 60ULL * 1000 * 1000 * 1000;
  if (unit == "h") return 3600ULL * 1000 * 1000 * 1000;
  return 0;
}

}  // namespace

std::string canonical_header_key(std::string_view name) {
  std::string out(name);
  if (!http1::is_token(name)) return out;
  bool upper = true;
  for (char& c : out) {
    if (upper && c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 'a' + 'A');
    } else if (!upper && c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    upper = c == '-';
  }
  return out;
}

Result<std::chrono::nanoseconds> parse_go_duration(std::string_view text) {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return std::chrono::nanoseconds(0);
  if (s.empty()) return duration_error(text, "empty");
  uint64_t total = 0;
  while (!s.empty()) {
    if (!is_digit(s[0]) && s[0] != '.') return duration_error(text, "expected a number");
    uint64_t whole = 0;
    size_t i = 0;
    for (; i < s.size() && is_digit(s[i]); ++i) {
      if (whole > (kMax - static_cast<uint64_t>(s[i] - '0')) / 10) {
        return duration_error(text, "out of range");
      }
      whole = whole * 10 + static_cast<uint64_t>(s[i] - '0');
    }
    bool has_whole = i > 0;
    s.remove_prefix(i);
    uint64_t fraction = 0;
    double scale = 1;
    bool has_fraction = false;
    if (!s.empty() && s[0] == '.') {
      s.remove_prefix(1);
      for (i = 0; i < s.size() && is_digit(s[i]); ++i) {
        // Digits past what 63 bits can hold change nothing measurable.
        if (fraction < kMax / 10) {
          fraction = fraction * 10 + static_cast<uint64_t>(s[i] - '0');
          scale *= 10;
        }
      }
      has_fraction = i > 0;
      s.remove_prefix(i);
    }
    if (!has_whole && !has_fraction) return duration_error(text, "expected a number");
    for (i = 0; i < s.size() && s[i] != '.' && !is_digit(s[i]); ++i) {
    }
    if (i == 0) return duration_error(text, "missing unit");
    std::string_view unit = s.substr(0, i);
    s.remove_prefix(i);
    uint64_t nanos = unit_nanos(unit);
    if (nanos == 0) return duration_error(text, "unknown unit '" + std::string(unit) + "'");
    if (whole > kMax / nanos) return duration_error(text, "out of range");
    uint64_t value = whole * nanos;
    value += static_cast<uint64_t>(static_cast<double>(fraction) * (static_cast<double>(nanos) / scale));
    if (value > kMax - total) return duration_error(text, "out of range");
    total += value;
  }
  auto signed_total = static_cast<int64_t>(total);
  return std::chrono::nanoseconds(negative ? -signed_total : signed_total);
}

Result<std::string> decode_query_component(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      bool complete = i + 2 < text.size();
      int hi = complete ? hex_value(text[i + 1]) : -1;
      int lo = complete ? hex_value(text[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return make_error("invalid percent-escape in '" + std::string(text) + "'");
      }
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

Result<std::optional<std::string>> query_value(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    auto name = decode_query_component(pair.substr(0, eq));
    if (!name.ok() || *name != key) continue;
    if (eq == std::string_view::npos) return std::optional<std::string>(std::string());
    auto value = decode_query_component(pair.substr(eq + 1));
    if (!value.ok()) return std::move(value).error();
    return std::optional<std::string>(std::move(*value));
  }
  return std::optional<std::string>();
}

std::string grpc_status_name(uint32_t code) {
  static constexpr const char* kNames[] = {
      "OK",      "Canceled",           "Unknown",           "InvalidArgument", "DeadlineExceeded",
      "NotFound", "AlreadyExists",     "PermissionDenied",  "ResourceExhausted",
      "FailedPrecondition", "Aborted", "OutOfRange",        "Unimplemented",   "Internal",
      "Unavailable", "DataLoss",       "Unauthenticated"};
  if (code < sizeof(kNames) / sizeof(kNames[0])) return kNames[code];
  return "Code(" + std::to_string(code) + ")";
}

std::string grpc_frame(std::string_view message) {
  std::string out;
  out.reserve(5 + message.size());
  auto n = static_cast<uint32_t>(message.size());
  out += '\0';
  out += static_cast<char>((n >> 24) & 0xff);
  out += static_cast<char>((n >> 16) & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  out += static_cast<char>(n & 0xff);
  out.append(message);
  return out;
}

Result<std::vector<std::string_view>> split_grpc_frames(std::string_view body) {
  std::vector<std::string_view> messages;
  while (!body.empty()) {
    if (body.size() < 5) return make_error("grpc: truncated message frame", grpc_status::internal);
    auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(body[i])); };
    if (byte(0) != 0) {
      return make_error("grpc: compressed message but no grpc-encoding", grpc_status::internal);
    }
    uint32_t length = byte(1) << 24 | byte(2) << 16 | byte(3) << 8 | byte(4);
    if (length > kMaxGrpcMessage) {
      return make_error("grpc: message of " + std::to_string(length) + " bytes exceeds the limit of " +
                            std::to_string(kMaxGrpcMessage),
                        grpc_status::resource_exhausted);
    }
    if (body.size() - 5 < length) {
      return make_error("grpc: truncated message frame", grpc_status::internal);
    }
    messages.push_back(body.substr(5, length));
    body.remove_prefix(5 + length);
  }
  return messages;
}

namespace {

void append_varint(uint64_t v, std::string& out) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

Result<uint64_t> read_varint(std::string_view& in) {
  uint64_t v = 0;
  for (size_t i = 0; i < 10; ++i) {
    if (i >= in.size()) return make_error("protobuf: truncated varint");
    auto b = static_cast<uint8_t>(in[i]);
    // The tenth byte may only carry the 64th bit.
    if (i == 9 && b > 1) return make_error("protobuf: malformed varint");
    v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) {
      in.remove_prefix(i + 1);
      return v;
    }
  }
  return make_error("protobuf: malformed varint");
}

}  // namespace

std::string encode_echo_message(std::string_view message) {
  std::string out;
  if (message.empty()) return out;  // proto3 omits default values
  out += static_cast<char>(1 << 3 | 2);
  append_varint(message.size(), out);
  out.append(message);
  return out;
}

Result<std::string> decode_echo_message(std::string_view in) {
  std::string message;
  while (!in.empty()) {
    auto tag = read_varint(in);
    if (!tag.ok()) return std::move(tag).error();
    uint64_t field = *tag >> 3;
    auto wire_type = static_cast<unsigned>(*tag & 7);
    if (field == 0) return make_error("protobuf: field number 0");
    std::string truncated = "protobuf: truncated field " + std::to_string(field);
    if (field == 1 && wire_type != 2) {
      return make_error("protobuf: field 1 has wire type " + std::to_string(wire_type) + ", want 2");
    }
    switch (wire_type) {
      case 0: {
        auto v = read_varint(in);
        if (!v.ok()) return std::move(v).error();
        break;
      }
      case 1:
        if (in.size() < 8) return make_error(truncated);
        in.remove_prefix(8);
        break;
      case 2: {
        auto length = read_varint(in);
        if (!length.ok()) return std::move(length).error();
        if (*length > in.size()) return make_error(truncated);
        // Repeated occurrences of a singular field: the last one wins.
        if (field == 1) message.assign(in.substr(0, *length));
        in.remove_prefix(*length);
        break;
      }
      case 5:
        if (in.size() < 4) return make_error(truncated);
        in.remove_prefix(4);
        break;
      default:
        return make_error("protobuf: unsupported wire type " + std::to_string(wire_type));
    }
  }
  return message;
}

std::string encode_grpc_message(std::string_view text) {
  std::string out;
  for (char c : text) {
    auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b <= 0x7e && b != '%') {
      out += c;
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", b);
      out += hex;
    }
  }
  return out;
}

std::string decode_grpc_message(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    int hi = text[i] == '%' && i + 2 < text.size() ? hex_value(text[i + 1]) : -1;
    int lo = hi >= 0 ? hex_value(text[i + 2]) : -1;
    // A malformed escape is kept as is: the message is for humans.
    if (hi >= 0 && lo >= 0) {
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace trellis::support::echo
