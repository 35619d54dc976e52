// Internal to common/net: a TCP handle and the requests that may be in
// flight on it, in one allocation freed by the handle's close callback. A
// request cancelled by uv_close() calls back after its owner may be gone,
// so requests must live exactly as long as the handle (see uv_handle.h).
#pragma once

#include <uv.h>

namespace trellis::net {

struct TcpSocket {
  uv_tcp_t tcp;  // first: UvHandle casts between the two
  uv_connect_t connect;
  uv_write_t write;
  uv_shutdown_t shutdown;
};

}  // namespace trellis::net
