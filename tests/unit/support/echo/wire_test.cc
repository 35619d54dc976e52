#include "tests/support/echo/wire.h"

#include <doctest/doctest.h>

#include <string>

using namespace trellis::support::echo;
using namespace std::chrono_literals;

TEST_CASE("canonical_header_key follows Go's textproto rules") {
  CHECK(canonical_header_key("x-header-add") == "X-Header-Add");
  CHECK(canonical_header_key("X-HEADER-ADD") == "X-Header-Add");
  CHECK(canonical_header_key("content-type") == "Content-Type");
  CHECK(canonical_header_key("www-authenticate") == "Www-Authenticate");
  CHECK(canonical_header_key("a--b") == "A--B");
  CHECK(canonical_header_key("x_y") == "X_y");
  // Not a token: returned as is, like Go.
  CHECK(canonical_header_key("bad header") == "bad header");
  CHECK(canonical_header_key(":authority") == ":authority");
  CHECK(canonical_header_key("") == "");
}

TEST_CASE("parse_go_duration accepts Go's syntax") {
  CHECK(*parse_go_duration("1s") == 1s);
  CHECK(*parse_go_duration("500ms") == 500ms);
  CHECK(*parse_go_duration("0") == 0s);
  CHECK(*parse_go_duration("1.5s") == 1500ms);
  CHECK(*parse_go_duration(".5s") == 500ms);
  CHECK(*parse_go_duration("1m30s") == 90s);
  CHECK(*parse_go_duration("2h") == 7200s);
  CHECK(*parse_go_duration("10us") == 10us);
  CHECK(*parse_go_duration("10\xc2\xb5s") == 10us);
  CHECK(*parse_go_duration("7ns") == 7ns);
  CHECK(*parse_go_duration("-1s") == -1s);
  CHECK(*parse_go_duration("+2s") == 2s);
}

TEST_CASE("parse_go_duration rejects malformed text with exact errors") {
  auto error = [](std::string_view text) { return parse_go_duration(text).error().message; };
  CHECK(error("") == "invalid duration '': empty");
  CHECK(error("5") == "invalid duration '5': missing unit");
  CHECK(error("1x") == "invalid duration '1x': unknown unit 'x'");
  CHECK(error("abc") == "invalid duration 'abc': expected a number");
  CHECK(error(".s") == "invalid duration '.s': expected a number");
  CHECK(error("-") == "invalid duration '-': empty");
  CHECK(error("1s2") == "invalid duration '1s2': missing unit");
  CHECK(error("3000000h") == "invalid duration '3000000h': out of range");
  CHECK(error("99999999999999999999s") == "invalid duration '99999999999999999999s': out of range");
}

TEST_CASE("query components and values decode like Go's ParseQuery") {
  CHECK(*decode_query_component("a+b%20c%3A") == "a b c:");
  CHECK(decode_query_component("a%zz").error().message == "invalid percent-escape in 'a%zz'");
  CHECK(decode_query_component("a%2").error().message == "invalid percent-escape in 'a%2'");
  CHECK(*query_value("delay=1s&codes=503:1", "codes") == std::optional<std::string>("503:1"));
  CHECK(*query_value("delay=1s&delay=2s", "delay") == std::optional<std::string>("1s"));
  CHECK(*query_value("flag&x=1", "flag") == std::optional<std::string>(""));
  CHECK(!query_value("a=1", "b")->has_value());
  CHECK(!query_value("", "b")->has_value());
  // A key that does not decode is skipped; a bad value of the wanted key is an error.
  CHECK(*query_value("%zz=1&headers=X-A%3A1", "headers") == std::optional<std::string>("X-A:1"));
  CHECK(query_value("headers=%G0", "headers").error().message == "invalid percent-escape in '%G0'");
}

TEST_CASE("gRPC frames round-trip and malformed frames fail exactly") {
  std::string framed = grpc_frame("abc");
  CHECK(framed == std::string("\0\0\0\0\3abc", 8));
  std::string body = framed + grpc_frame("");
  auto two = split_grpc_frames(body);  // views into body
  REQUIRE(two.ok());
  REQUIRE(two->size() == 2);
  CHECK((*two)[0] == "abc");
  CHECK((*two)[1].empty());
  CHECK(split_grpc_frames("")->empty());

  auto truncated = split_grpc_frames(framed.substr(0, 6));
  CHECK(truncated.error().message == "grpc: truncated message frame");
  CHECK(truncated.error().code == static_cast<int>(grpc_status::internal));
  CHECK(split_grpc_frames(std::string("\0\0", 2)).error().message == "grpc: truncated message frame");
  CHECK(split_grpc_frames(std::string("\1\0\0\0\0", 5)).error().message ==
        "grpc: compressed message but no grpc-encoding");
  auto huge = split_grpc_frames(std::string("\0\x7f\0\0\0", 5));
  CHECK(huge.error().message == "grpc: message of 2130706432 bytes exceeds the limit of 4194304");
  CHECK(huge.error().code == static_cast<int>(grpc_status::resource_exhausted));
}

TEST_CASE("the Echo protobuf encodes field 1 and skips unknown fields") {
  CHECK(encode_echo_message("hi") == std::string("\x0a\x02hi", 4));
  CHECK(encode_echo_message("").empty());
  std::string long_text(300, 'z');
  std::string encoded = encode_echo_message(long_text);
  CHECK(encoded.substr(0, 3) == std::string("\x0a\xac\x02", 3));  // varint 300
  CHECK(*decode_echo_message(encoded) == long_text);
  CHECK(*decode_echo_message("") == "");
  // Unknown fields of every wire type around the message: varint, 64-bit,
  // length-delimited, 32-bit.
  std::string with_unknown = std::string("\x10\x96\x01", 3) + std::string("\x19", 1) + std::string(8, '\0') +
                             std::string("\x22\x01x", 3) + encode_echo_message("hello") +
                             std::string("\x2d", 1) + std::string(4, '\0');
  CHECK(*decode_echo_message(with_unknown) == "hello");
  // The last occurrence of a singular field wins.
  CHECK(*decode_echo_message(encode_echo_message("a") + encode_echo_message("b")) == "b");
}

TEST_CASE("malformed protobuf fails with exact errors") {
  auto error = [](const std::string& bytes) { return decode_echo_message(bytes).error().message; };
  CHECK(error(std::string("\x0a", 1)) == "protobuf: truncated varint");
  CHECK(error(std::string("\x0a\x05hi", 4)) == "protobuf: truncated field 1");
  CHECK(error(std::string("\x08\x01", 2)) == "protobuf: field 1 has wire type 0, want 2");
  CHECK(error(std::string("\x1b", 1)) == "protobuf: unsupported wire type 3");
  CHECK(error(std::string("\x02\x00", 2)) == "protobuf: field number 0");
  CHECK(error(std::string("\x19\x00", 2)) == "protobuf: truncated field 3");
  CHECK(error(std::string("\x1d\x00", 2)) == "protobuf: truncated field 3");
  CHECK(error(std::string(11, '\xff')) == "protobuf: malformed varint");
  CHECK(error(std::string(9, '\xff') + "\x02") == "protobuf: malformed varint");
}

TEST_CASE("grpc-message percent-encoding round-trips") {
  CHECK(encode_grpc_message("unknown method Nope") == "unknown method Nope");
  CHECK(encode_grpc_message("50% \n\xc3\xa9") == "50%25 %0A%C3%A9");
  CHECK(decode_grpc_message("50%25 %0A%C3%A9") == "50% \n\xc3\xa9");
  CHECK(decode_grpc_message("bad %zz escape %") == "bad %zz escape %");
  CHECK(grpc_status_name(0) == "OK");
  CHECK(grpc_status_name(12) == "Unimplemented");
  CHECK(grpc_status_name(16) == "Unauthenticated");
  CHECK(grpc_status_name(17) == "Code(17)");
}
