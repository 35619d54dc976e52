// libuv (and raw syscall) failures as trellis::Error. libuv codes are negated
// errno values on Unix; Error::code holds the positive errno so that callers
// compare against ECONNREFUSED, ETIMEDOUT, ... The message is
// "<what>: <libuv's description>", e.g. "connect to 10.0.0.1:80: connection refused".
#pragma once

#include <uv.h>

#include <string>
#include <string_view>

#include "common/base/result.h"

namespace trellis::event {

inline Error uv_error(std::string_view what, int uv_code) {
  std::string message(what);
  message += ": ";
  message += uv_strerror(uv_code);
  return make_error(std::move(message), -uv_code);
}

}  // namespace trellis::event
