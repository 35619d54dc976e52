// Character-level HTTP/1.1 grammar (RFC 9110 §5.6, RFC 9112 §3) shared by the
// decoder, which checks what llhttp lets through, and the encoder, which must
// never emit a byte that could end a line or a field early.
#pragma once

#include <string_view>

namespace trellis::http1 {

// token = 1*tchar: methods and field names.
bool is_token(std::string_view s);

// field-value: SP, HTAB, VCHAR and obs-text; never CR, LF, NUL or another control.
bool is_field_value(std::string_view s);

// reason-phrase: the same characters as a field value.
inline bool is_reason_phrase(std::string_view s) { return is_field_value(s); }

// A request-target character: VCHAR except '#' (a fragment never goes on the wire).
inline bool is_target_char(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7f && c != '#';
}

// host [ ":" port ] as it appears in Host and in CONNECT targets: reg-name,
// IPv4 or a bracketed IPv6 literal, optional digits-only port. Empty is not
// an authority (callers decide whether an empty Host is acceptable).
bool is_authority(std::string_view s);

// Case-insensitive check whether a comma-separated field value (Connection)
// lists `token`.
bool has_token(std::string_view list, std::string_view token);

// The value without leading and trailing SP / HTAB (RFC 9110 OWS).
inline std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace trellis::http1
