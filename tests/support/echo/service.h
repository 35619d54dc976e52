// What the echo server answers, independent of the wire protocol: the HTTP
// echo (Istio's body lines and query knobs) and the gRPC Echo method. The
// connections in server.cc decode requests and encode these replies.
//
// Threading: one EchoService per server, used on the server's loop thread
// only (the ?codes= counters are its only mutable state).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/base/result.h"
#include "common/http/message.h"

namespace trellis::support::echo {

// Longest ?delay= (connections are closed after 10 minutes without progress).
inline constexpr std::chrono::minutes kMaxDelay{5};
// Largest ?size= padding.
inline constexpr uint64_t kMaxPadding = 16 * 1024 * 1024;

struct WeightedCode {
  int code;
  int weight;
};

// "?codes=503:1,200:3": code[:weight], weight >= 0 (default 1), code in
// [200, 599]. Errors (Istio's wording): "invalid '5x' (want code or
// code:count)", "invalid HTTP response code 99", "invalid count -1",
// "the counts add up to 0".
Result<std::vector<WeightedCode>> parse_codes(std::string_view spec);

// "?headers=X-A:1,X-B:2": name:value pairs; a later pair with the same name
// replaces an earlier one (Istio sets, it does not add). Errors: "invalid
// 'abc' (want name:value)", "invalid header name 'a b'", "invalid value for
// X-A", "Content-Length is set by the server".
Result<std::vector<http::Header>> parse_response_headers(std::string_view spec);

struct HttpReply {
  int status = 200;
  http::HeaderMap headers;  // Content-Type and the ?headers= knob; never framing fields
  std::string body;
  std::chrono::milliseconds delay{0};
};

struct GrpcReply {
  uint32_t status = 0;    // grpc-status
  std::string message;    // grpc-message (plain text) when status != 0
  std::string frame;      // the framed EchoResponse when status == 0
};

class EchoService {
 public:
  EchoService(std::string hostname, std::string version)
      : hostname_(std::move(hostname)), version_(std::move(version)) {}

  // `proto` as Go spells it ("HTTP/1.1", "HTTP/2.0"); `port` is the local
  // port the request came in on (ServicePort=).
  HttpReply http(const http::RequestHead& head, std::string_view proto, uint16_t port,
                 std::string_view peer_ip, uint64_t body_length);
  // `body` is the whole request body (gRPC length-prefixed messages).
  GrpcReply grpc(const http::RequestHead& head, uint16_t port, std::string_view peer_ip,
                 std::string_view body);

  const std::string& hostname() const { return hostname_; }

 private:
  int next_code(std::string_view spec, const std::vector<WeightedCode>& codes);

  std::string hostname_;
  std::string version_;
  // Per ?codes= spelling: how many requests it has answered. Deterministic
  // round-robin by weight, so a test can predict the sequence exactly.
  std::unordered_map<std::string, uint64_t> code_counters_;
};

}  // namespace trellis::support::echo
