#include "common/http1/syntax.h"

#include <array>
#include <cstdint>
#include <cstring>

#include "common/http/message.h"

namespace trellis::http1 {
namespace {

constexpr std::array<bool, 256> make_tchar_table() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}

constexpr std::array<bool, 256> kTchar = make_tchar_table();

// reg-name and IPv4 characters: unreserved / pct-encoded / sub-delims (RFC 3986 §3.2.2).
constexpr std::array<bool, 256> make_reg_name_table() {
  std::array<bool, 256> t = make_tchar_table();
  for (char c : std::string_view("^`|#")) t[static_cast<unsigned char>(c)] = false;
  for (char c : std::string_view("(),;=")) t[static_cast<unsigned char>(c)] = true;
  return t;
}

constexpr std::array<bool, 256> kRegName = make_reg_name_table();

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_field_value_bytes(std::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

}  // namespace

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!kTchar[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

bool is_field_value(std::string_view s) {
  constexpr uint64_t k01 = 0x0101010101010101;
  constexpr uint64_t k80 = 0x80 * k01;
  size_t i = 0;
  // 8 bytes at a time: a top bit is set for every byte below 0x20 or equal to
  // 0x7f (exact, no false alarm); HTAB is one of them, so a hit is re-checked.
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    uint64_t del = w ^ (0x7f * k01);
    uint64_t hit = ((w - 0x20 * k01) & ~w & k80) | ((del - k01) & ~del & k80);
    if (hit != 0 && !is_field_value_bytes(s.substr(i, 8))) return false;
  }
  return is_field_value_bytes(s.substr(i));
}

bool is_authority(std::string_view s) {
  if (s.empty()) return false;
  std::string_view host = s;
  std::string_view port;
  if (s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (char c : s.substr(1, close - 1)) {
      bool hex = is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      if (!hex && c != ':' && c != '.') return false;
    }
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
      if (port.empty()) return false;
    }
    host = {};
  } else {
    size_t colon = s.rfind(':');
    if (colon != std::string_view::npos) {
      host = s.substr(0, colon);
      port = s.substr(colon + 1);
      if (port.empty()) return false;
    }
    if (host.empty()) return false;
  }
  for (char c : host) {
    if (!kRegName[static_cast<unsigned char>(c)]) return false;
  }
  for (char c : port) {
    if (!is_digit(c)) return false;
  }
  return port.size() <= 5;
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    if (http::iequals(trim_ows(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace trellis::http1
