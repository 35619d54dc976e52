#include "tests/support/echo/options.h"

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

using namespace trellis::support::echo;
using trellis::Result;
using trellis::config::map_environment;

namespace {

Result<ServerOptions> server_args(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  return parse_server_args(args, map_environment(std::move(env)), "system-host");
}

}  // namespace

TEST_CASE("server defaults match the Istio echo app's") {
  auto o = server_args({});
  REQUIRE(o.ok());
  CHECK(o->http_ports == std::vector<uint16_t>{8080});
  CHECK(o->grpc_ports == std::vector<uint16_t>{7070});
  CHECK(o->tcp_ports == std::vector<uint16_t>{9090});
  CHECK(o->bind == "0.0.0.0");
  CHECK(o->hostname == "system-host");
  CHECK(o->version.empty());
  CHECK(o->tcp_greeting.empty());
}

TEST_CASE("server flags: repeatable ports, both flag forms, the conformance manifest's args") {
  auto o = server_args({"--tcp=9090", "--port=8080", "--grpc=7070", "--port=8443", "--tls=8443", "--crt=/cert.crt",
                        "--key=/cert.key", "--version", "v2", "--tcp-greeting", "hello", "--bind", "::"});
  REQUIRE(o.ok());
  CHECK(o->http_ports == std::vector<uint16_t>{8080});  // 8443 is TLS: not served
  CHECK(o->tls_ports == std::vector<uint16_t>{8443});
  CHECK(o->grpc_ports == std::vector<uint16_t>{7070});
  CHECK(o->tcp_ports == std::vector<uint16_t>{9090});
  CHECK(o->version == "v2");
  CHECK(o->tcp_greeting == "hello");
  CHECK(o->bind == "::");
  auto zero = server_args({"--port", "0", "--port", "0", "--grpc", "0"});
  REQUIRE(zero.ok());
  CHECK(zero->http_ports == std::vector<uint16_t>{0, 0});
}

TEST_CASE("server hostname: flag, then POD_NAME, then HOSTNAME, then gethostname()") {
  CHECK(server_args({"--hostname", "flag-host"}, {{"POD_NAME", "pod"}})->hostname == "flag-host");
  CHECK(server_args({}, {{"POD_NAME", "pod"}, {"HOSTNAME", "host"}})->hostname == "pod");
  CHECK(server_args({}, {{"HOSTNAME", "host"}})->hostname == "host");
  CHECK(server_args({}, {{"POD_NAME", ""}})->hostname == "system-host");
}

TEST_CASE("server flag errors are exact") {
  auto error = [](std::vector<std::string> args) { return server_args(std::move(args)).error().message; };
  CHECK(error({"--port", "99999"}) == "--port: expected a port between 0 and 65535, got '99999'");
  CHECK(error({"--grpc=x"}) == "--grpc: expected a port between 0 and 65535, got 'x'");
  CHECK(error({"--port"}) == "--port: missing value");
  CHECK(error({"--frob=1"}) == "unknown flag --frob");
  CHECK(error({"extra"}) == "unexpected argument 'extra'");
  CHECK(error({"--bind", "localhost"}) == "--bind: invalid IP address 'localhost'");
  CHECK(error({"--hostname="}) == "--hostname: must not be empty");
  CHECK(server_args({"--help"})->help);
}

TEST_CASE("client flags in the forms the conformance suite uses") {
  auto o = parse_client_args({"http://echo/v2", "--method=POST", "-H", "Version:two", "-H", "Host: echo-v1",
                              "-Hx-a:1", "--header=x-b:2", "--count=500"});
  REQUIRE(o.ok());
  CHECK(o->url == "http://echo/v2");
  CHECK(o->method == "POST");
  CHECK(o->count == 500);
  REQUIRE(o->headers.size() == 4);
  CHECK(o->headers[0] == std::make_pair(std::string("Version"), std::string("two")));
  CHECK(o->headers[1] == std::make_pair(std::string("Host"), std::string("echo-v1")));  // OWS trimmed
  CHECK(o->headers[2] == std::make_pair(std::string("x-a"), std::string("1")));
  CHECK(o->headers[3] == std::make_pair(std::string("x-b"), std::string("2")));

  auto all = parse_client_args({"grpc://echo:7070", "--qps", "12.5", "--timeout", "1.5s", "--concurrency", "3",
                                "--body", "hi", "--connect-to", "[::1]:7070", "--http2", "--summary"});
  REQUIRE(all.ok());
  CHECK(all->qps == 12.5);
  CHECK(all->timeout == std::chrono::milliseconds(1500));
  CHECK(all->concurrency == 3);
  CHECK(all->body == "hi");
  CHECK(all->connect_to == "[::1]:7070");
  CHECK(all->http2);
  CHECK(all->summary);

  auto defaults = parse_client_args({"tcp://h:1"});
  REQUIRE(defaults.ok());
  CHECK(defaults->method == "GET");
  CHECK(defaults->count == 1);
  CHECK(defaults->concurrency == 20);
  CHECK(defaults->timeout == std::chrono::milliseconds(5000));
  CHECK(defaults->qps == 0);
  CHECK(!defaults->http2);
}

TEST_CASE("client flag errors are exact") {
  auto error = [](std::vector<std::string> args) { return parse_client_args(args).error().message; };
  CHECK(error({}) == "missing URL");
  CHECK(error({"http://a", "http://b"}) == "unexpected argument 'http://b' (the URL is 'http://a')");
  CHECK(error({"http://a", "--count", "0"}) == "--count: expected an integer between 1 and 100000, got '0'");
  CHECK(error({"http://a", "--concurrency=abc"}) == "--concurrency: expected an integer between 1 and 1000, got 'abc'");
  CHECK(error({"http://a", "--qps", "-1"}) == "--qps: expected a number >= 0, got '-1'");
  CHECK(error({"http://a", "--qps", "nan"}) == "--qps: expected a number >= 0, got 'nan'");
  CHECK(error({"http://a", "--timeout", "5"}) == "--timeout: invalid duration '5': missing unit");
  CHECK(error({"http://a", "--timeout", "0s"}) == "--timeout: must be at least 1ms, got '0s'");
  CHECK(error({"http://a", "-H", "novalue"}) == "-H: want key:value, got 'novalue'");
  CHECK(error({"http://a", "-H", "bad key:v"}) == "-H: invalid header name 'bad key'");
  CHECK(error({"http://a", "-H", std::string("k:a\x01z")}) == "-H: invalid character in the value of k");
  CHECK(error({"http://a", "--method", "GE T"}) == "--method: not a valid method 'GE T'");
  CHECK(error({"http://a", "--connect-to", "nohost"}) == "--connect-to: invalid address 'nohost': want host:port");
  CHECK(error({"http://a", "--http2=maybe"}) == "--http2: expected true or false, got 'maybe'");
  CHECK(error({"http://a", "--body"}) == "--body: missing value");
  CHECK(error({"ftp://a"}) == "invalid URL 'ftp://a': unsupported scheme 'ftp' (want http, grpc or tcp)");
  CHECK(parse_client_args({"--help"})->help);
}

TEST_CASE("parse_url splits scheme, host, port, authority and target") {
  auto u = parse_url("http://echo/v2?x=1");
  REQUIRE(u.ok());
  CHECK(u->scheme == Scheme::http);
  CHECK(u->host == "echo");
  CHECK(u->port == 80);
  CHECK(u->authority == "echo");
  CHECK(u->target == "/v2?x=1");

  auto v6 = parse_url("http://[fd00::5]:8080");
  REQUIRE(v6.ok());
  CHECK(v6->host == "fd00::5");
  CHECK(v6->port == 8080);
  CHECK(v6->authority == "[fd00::5]:8080");
  CHECK(v6->target == "/");

  CHECK(parse_url("http://echo?animal=whale")->target == "/?animal=whale");
  CHECK(parse_url("grpc://echo:7070")->scheme == Scheme::grpc);
  CHECK(parse_url("grpc://echo:7070/proto.EchoTestService/Nope")->target == "/proto.EchoTestService/Nope");
  CHECK(parse_url("tcp://10.0.0.1:9090")->port == 9090);
}

TEST_CASE("parse_url errors are exact") {
  auto error = [](std::string_view url) { return parse_url(url).error().message; };
  CHECK(error("echo/v2") == "invalid URL 'echo/v2': missing scheme (want http://, grpc:// or tcp://)");
  CHECK(error("https://echo") == "invalid URL 'https://echo': unsupported scheme 'https' (want http, grpc or tcp)");
  CHECK(error("http:///x") == "invalid URL 'http:///x': missing host");
  CHECK(error("http://:80/") == "invalid URL 'http://:80/': missing host");
  CHECK(error("http://echo:99999/") == "invalid URL 'http://echo:99999/': invalid port '99999'");
  CHECK(error("http://echo:0/") == "invalid URL 'http://echo:0/': invalid port '0'");
  CHECK(error("grpc://echo") == "invalid URL 'grpc://echo': grpc:// needs a port");
  CHECK(error("tcp://echo") == "invalid URL 'tcp://echo': tcp:// needs a port");
  CHECK(error("http://[::1/") == "invalid URL 'http://[::1/': unterminated IPv6 literal");
  CHECK(error("http://::1:80/") == "invalid URL 'http://::1:80/': IPv6 addresses must be in brackets");
  CHECK(error("http://echo/a b") == "invalid URL 'http://echo/a b': invalid character in path");
}

TEST_CASE("parse_host_port") {
  CHECK(*parse_host_port("127.0.0.1:80") == std::make_pair(std::string("127.0.0.1"), uint16_t{80}));
  CHECK(*parse_host_port("[::1]:8080") == std::make_pair(std::string("::1"), uint16_t{8080}));
  CHECK(*parse_host_port("echo-v2:8080") == std::make_pair(std::string("echo-v2"), uint16_t{8080}));
  CHECK(parse_host_port("echo").error().message == "invalid address 'echo': want host:port");
  CHECK(parse_host_port(":80").error().message == "invalid address ':80': want host:port");
  CHECK(parse_host_port("echo:x").error().message == "invalid address 'echo:x': want host:port");
}
