#include "tests/support/echo/service.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/support/echo/wire.h"

using namespace trellis::support::echo;
using trellis::http::RequestHead;
using namespace std::chrono_literals;

namespace {

RequestHead request(std::string target, std::string method = "GET") {
  RequestHead head;
  head.method = std::move(method);
  head.target = std::move(target);
  head.authority = "echo";
  return head;
}

}  // namespace

TEST_CASE("the HTTP echo body has Istio's lines in Istio's order") {
  EchoService service("echo-v1-5d8f9-abcde", "v1");
  RequestHead head = request("/a/b?x=1");
  head.headers.add("x-header-add", "one");
  head.headers.add("Accept", "*/*");
  head.headers.add("X-HEADER-ADD", "two");
  head.headers.add("Transfer-Encoding", "chunked");  // framing in Go, never echoed
  head.headers.add("Content-Length", "3");
  HttpReply reply = service.http(head, "HTTP/1.1", 8080, "10.0.0.7", 3);
  CHECK(reply.status == 200);
  CHECK(reply.delay == 0ms);
  CHECK(reply.headers.size() == 1);
  CHECK(*reply.headers.get("Content-Type") == "application/text");
  CHECK(reply.body ==
        "ServiceVersion=v1\n"
        "ServicePort=8080\n"
        "Host=echo\n"
        "URL=/a/b?x=1\n"
        "Method=GET\n"
        "Proto=HTTP/1.1\n"
        "IP=10.0.0.7\n"
        "BodyLength=3\n"
        "RequestHeader=Accept:*/*\n"
        "RequestHeader=Content-Length:3\n"
        "RequestHeader=X-Header-Add:one\n"
        "RequestHeader=X-Header-Add:two\n"
        "Hostname=echo-v1-5d8f9-abcde\n");
}

TEST_CASE("/healthz answers ok") {
  EchoService service("h", "");
  HttpReply reply = service.http(request("/healthz?codes=500"), "HTTP/1.1", 8080, "", 0);
  CHECK(reply.status == 200);
  CHECK(reply.body == "ok\n");
}

TEST_CASE("?codes cycles deterministically by weight, per spelling") {
  EchoService service("h", "");
  std::vector<int> seen;
  for (int i = 0; i < 8; ++i) seen.push_back(service.http(request("/?codes=503:1,200:3"), "HTTP/1.1", 1, "", 0).status);
  CHECK(seen == std::vector<int>{503, 200, 200, 200, 503, 200, 200, 200});
  // Another spelling has its own counter.
  CHECK(service.http(request("/?codes=500,201"), "HTTP/1.1", 1, "", 0).status == 500);
  CHECK(service.http(request("/?codes=503:1,200:3"), "HTTP/1.1", 1, "", 0).status == 503);
  CHECK(service.http(request("/?codes=500,201"), "HTTP/1.1", 1, "", 0).status == 201);
  CHECK(service.http(request("/?codes=404:0,418"), "HTTP/1.1", 1, "", 0).status == 418);
}

TEST_CASE("parse_codes errors use Istio's wording") {
  CHECK(parse_codes("5x").error().message == "invalid '5x' (want code or code:count)");
  CHECK(parse_codes("500:1:2").error().message == "invalid '500:1:2' (want code or code:count)");
  CHECK(parse_codes("500:x").error().message == "invalid '500:x' (want code or code:count)");
  CHECK(parse_codes("99").error().message == "invalid HTTP response code 99");
  CHECK(parse_codes("600").error().message == "invalid HTTP response code 600");
  CHECK(parse_codes("500:-1").error().message == "invalid count -1");
  CHECK(parse_codes("500:0").error().message == "the counts add up to 0");
  CHECK(parse_codes("").error().message == "invalid '' (want code or code:count)");
}

TEST_CASE("?headers sets response headers; a later name replaces an earlier one") {
  EchoService service("h", "");
  HttpReply reply = service.http(request("/?headers=X-Header-Set:set,x-b:1,X-B:2,Content-Type:text/x"), "HTTP/1.1",
                                 1, "", 0);
  CHECK(reply.status == 200);
  CHECK(reply.headers.size() == 3);
  CHECK(*reply.headers.get("Content-Type") == "text/x");
  CHECK(*reply.headers.get("X-Header-Set") == "set");
  CHECK(reply.headers.count("x-b") == 1);
  CHECK(*reply.headers.get("x-b") == "2");
  // Percent-encoded values decode ("%3A" is ':', '+' is a space).
  HttpReply decoded = service.http(request("/?headers=X-A%3Aa+b"), "HTTP/1.1", 1, "", 0);
  CHECK(*decoded.headers.get("X-A") == "a b");
}

TEST_CASE("parse_response_headers errors are exact") {
  CHECK(parse_response_headers("nocolon").error().message == "invalid 'nocolon' (want name:value)");
  CHECK(parse_response_headers("a b:1").error().message == "invalid header name 'a b'");
  CHECK(parse_response_headers(std::string("x:\x01", 3)).error().message == "invalid value for x");
  CHECK(parse_response_headers("Content-Length:5").error().message == "Content-Length is set by the server");
  CHECK(parse_response_headers("connection:close").error().message == "connection is set by the server");
}

TEST_CASE("?delay and ?size") {
  EchoService service("h", "");
  CHECK(service.http(request("/?delay=1s"), "HTTP/1.1", 1, "", 0).delay == 1000ms);
  CHECK(service.http(request("/?delay=500ms"), "HTTP/1.1", 1, "", 0).delay == 500ms);
  CHECK(service.http(request("/?delay=1.0001ms"), "HTTP/1.1", 1, "", 0).delay == 2ms);  // rounded up
  HttpReply padded = service.http(request("/?size=10"), "HTTP/1.1", 1, "", 0);
  HttpReply plain = service.http(request("/?size=0"), "HTTP/1.1", 1, "", 0);
  CHECK(padded.body.size() == plain.body.size() + 10 + 1);  // the URL line is 1 byte longer
  CHECK(padded.body.substr(padded.body.size() - 10) == "xxxxxxxxx\n");
}

TEST_CASE("a bad knob answers 400 with the error above the echo") {
  EchoService service("h", "");
  HttpReply reply = service.http(request("/?delay=abc&codes=5x&headers=nocolon&size=-1&delay=1s"), "HTTP/1.1", 1,
                                 "", 0);
  CHECK(reply.status == 400);
  CHECK(reply.delay == 0ms);
  CHECK(reply.body.find("delay error: invalid duration 'abc': expected a number\n"
                        "response headers error: invalid 'nocolon' (want name:value)\n"
                        "codes error: invalid '5x' (want code or code:count)\n"
                        "size error: expected an integer between 0 and 16777216, got '-1'\n"
                        "ServiceVersion=\n") == 0);
  CHECK(service.http(request("/?delay=-1s"), "HTTP/1.1", 1, "", 0).body.find(
            "delay error: must not be negative, got '-1s'\n") == 0);
  CHECK(service.http(request("/?delay=6m"), "HTTP/1.1", 1, "", 0).body.find("delay error: at most 5m, got '6m'\n") ==
        0);
  CHECK(service.http(request("/?size=16777217"), "HTTP/1.1", 1, "", 0).status == 400);
  CHECK(service.http(request("/?codes=%zz"), "HTTP/1.1", 1, "", 0).body.find(
            "query error: invalid percent-escape in '%zz'\n") == 0);
}

TEST_CASE("gRPC Echo: message lines, metadata lowercased and sorted, -bin and reserved keys skipped") {
  EchoService service("echo-v2-1-2", "v2");
  RequestHead head = request("/proto.EchoTestService/Echo", "POST");
  head.authority = "echo:7070";
  head.headers.add("content-type", "application/grpc");
  head.headers.add("te", "trailers");
  head.headers.add("X-Test-Case", "set");
  head.headers.add("x-trace-bin", "AAEC");
  head.headers.add("grpc-timeout", "5S");
  head.headers.add("x-header-add", "a");
  head.headers.add("x-header-add", "b");
  GrpcReply reply = service.grpc(head, 7070, "10.0.0.9", grpc_frame(encode_echo_message("hello")));
  REQUIRE(reply.status == 0);
  auto frames = split_grpc_frames(reply.frame);
  REQUIRE(frames.ok());
  REQUIRE(frames->size() == 1);
  CHECK(*decode_echo_message(frames->front()) ==
        "Host=echo:7070\n"
        "RequestHeader=content-type:application/grpc\n"
        "RequestHeader=x-header-add:a\n"
        "RequestHeader=x-header-add:b\n"
        "RequestHeader=x-test-case:set\n"
        "StatusCode=200\n"
        "ServiceVersion=v2\n"
        "ServicePort=7070\n"
        "IP=10.0.0.9\n"
        "Proto=GRPC\n"
        "Echo=hello\n"
        "Hostname=echo-v2-1-2\n");
}

TEST_CASE("gRPC errors: unknown methods and malformed requests") {
  EchoService service("h", "");
  auto call = [&](std::string path, std::string body) {
    return service.grpc(request(std::move(path), "POST"), 7070, "", body);
  };
  std::string ok_body = grpc_frame(encode_echo_message("x"));
  GrpcReply unknown_method = call("/proto.EchoTestService/ForwardEcho", ok_body);
  CHECK(unknown_method.status == grpc_status::unimplemented);
  CHECK(unknown_method.message == "unknown method ForwardEcho for service proto.EchoTestService");
  CHECK(call("/other.Service/Echo", ok_body).message == "unknown service other.Service");
  CHECK(call("/nope", ok_body).message == "malformed method name: \"/nope\"");
  CHECK(call("/nope", ok_body).status == grpc_status::unimplemented);

  GrpcReply none = call("/proto.EchoTestService/Echo", "");
  CHECK(none.status == grpc_status::internal);
  CHECK(none.message == "grpc: a unary call takes exactly one request message, got 0");
  CHECK(call("/proto.EchoTestService/Echo", ok_body + ok_body).message ==
        "grpc: a unary call takes exactly one request message, got 2");
  CHECK(call("/proto.EchoTestService/Echo", ok_body.substr(0, 4)).message == "grpc: truncated message frame");
  CHECK(call("/proto.EchoTestService/Echo", grpc_frame(std::string("\x08\x01", 2))).message ==
        "grpc: error unmarshalling request: protobuf: field 1 has wire type 0, want 2");
  GrpcReply compressed = call("/proto.EchoTestService/Echo", std::string("\1\0\0\0\0", 5));
  CHECK(compressed.status == grpc_status::internal);
  CHECK(compressed.message == "grpc: compressed message but no grpc-encoding");
}
