// Small codecs trellis-echo needs and that have no home in common/: Go's
// header-name and duration conventions (the Istio echo app is written in Go and
// the conformance suite compares its output), URL query decoding, and the
// gRPC framing and two-field protobuf of proto.EchoTestService/Echo,
// hand-rolled so that no protobuf dependency is needed. Pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace trellis::support::echo {

// Go's textproto.CanonicalMIMEHeaderKey: "x-header-add" -> "X-Header-Add".
// A name with a byte that is not a token character is returned unchanged.
std::string canonical_header_key(std::string_view name);

// Go's time.ParseDuration: "1s", "500ms", "1.5h", "1m30s", "0". Units ns, us
// (µs, μs), ms, s, m, h. Errors: "invalid duration '1x': unknown unit 'x'",
// "invalid duration '5': missing unit", "invalid duration '': empty",
// "invalid duration '9999999h': out of range".
Result<std::chrono::nanoseconds> parse_go_duration(std::string_view text);

// Percent-decoding of one query component ("+" is a space).
// Error: "invalid percent-escape in 'a%zz'".
Result<std::string> decode_query_component(std::string_view text);

// The first value of `key` in a raw query ("a=1&b=2"), decoded; nullopt when
// absent. Pairs whose key does not decode are skipped, as Go's ParseQuery does.
Result<std::optional<std::string>> query_value(std::string_view query, std::string_view key);

// --- gRPC -------------------------------------------------------------------

// gRPC status codes used here (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
namespace grpc_status {
inline constexpr uint32_t ok = 0;
inline constexpr uint32_t resource_exhausted = 8;
inline constexpr uint32_t unimplemented = 12;
inline constexpr uint32_t internal = 13;
}  // namespace grpc_status

// "OK", "Unimplemented", ... as grpc-go prints them; "Code(99)" otherwise.
std::string grpc_status_name(uint32_t code);

// Largest message either side accepts (grpc-go's default receive limit).
inline constexpr size_t kMaxGrpcMessage = 4 * 1024 * 1024;

// One length-prefixed message: flag byte 0 (uncompressed), 4-byte length.
std::string grpc_frame(std::string_view message);

// Splits a complete gRPC body into its messages (views into `body`).
// Errors: "grpc: truncated message frame", "grpc: compressed message but no
// grpc-encoding" (code grpc_status::internal), "grpc: message of N bytes
// exceeds the limit of 4194304" (code grpc_status::resource_exhausted).
Result<std::vector<std::string_view>> split_grpc_frames(std::string_view body);

// EchoRequest / EchoResponse: both are { string message = 1; }.
std::string encode_echo_message(std::string_view message);
// Unknown fields are skipped. Errors: "protobuf: truncated varint",
// "protobuf: malformed varint", "protobuf: field 1 has wire type 0, want 2",
// "protobuf: truncated field 3", "protobuf: unsupported wire type 3",
// "protobuf: field number 0".
Result<std::string> decode_echo_message(std::string_view protobuf);

// grpc-message is percent-encoded (gRPC over HTTP/2, "Status-Message").
std::string encode_grpc_message(std::string_view text);
std::string decode_grpc_message(std::string_view text);

}  // namespace trellis::support::echo
