// Error categories of the TLS layer. Every trellis::Error this module returns
// carries one of these in `code`, so callers can count and react by category
// (e.g. `trellis_tls_handshake_errors_total{reason=...}`) without parsing the
// human-readable message.
#pragma once

#include <string_view>

#include "common/base/result.h"

namespace trellis::tls {

enum class ErrorCode : int {
  invalid_argument = 1,  // a config, PEM input or certificate given to us is unusable
  protocol,              // malformed, unexpected or unacceptable TLS from the peer
                         // (not TLS at all, no common version or cipher, bad record)
  peer_alert,            // the peer aborted with a fatal alert: it rejected us
  peer_certificate,      // the peer's certificate is missing or failed verification
  peer_identity,         // a verified peer failed the caller's identity check
  alpn,                  // no common ALPN protocol under AlpnMismatch::fail
  truncated,             // the transport ended before the handshake or close_notify
  closed,                // write after close_notify
};

// Stable lower_snake names, suitable as metric label values.
std::string_view error_code_name(ErrorCode code);

inline ErrorCode error_code(const Error& error) { return static_cast<ErrorCode>(error.code); }

inline Error make_tls_error(ErrorCode code, std::string message) {
  return make_error(std::move(message), static_cast<int>(code));
}

}  // namespace trellis::tls
