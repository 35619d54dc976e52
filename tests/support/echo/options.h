// Command lines of `trellis-echo server` and `trellis-echo client`, parsed in
// one place into typed, validated structs. common/config is not used: its
// flags are single-valued and long-only, while these command lines mirror the
// Istio echo app's (repeatable --port, -H k:v, --count=N).
//
// Flags are `--name value` or `--name=value`; a switch is `--name`; `--`
// ends the flags. Every error is exact, e.g. "--count: expected an integer
// between 1 and 100000, got 'x'", "unknown flag --frob", "--port: missing value".
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/base/result.h"
#include "common/config/config.h"

namespace trellis::support::echo {

struct ServerOptions {
  std::vector<uint16_t> http_ports;  // HTTP/1.1 and h2c; default {8080}; 0 = ephemeral
  std::vector<uint16_t> grpc_ports;  // default {7070}
  std::vector<uint16_t> tcp_ports;   // default {9090}
  // Accepted so that the conformance manifests' args work (--tls=8443
  // --crt=... --key=...); TLS is not implemented, so these ports are not served.
  std::vector<uint16_t> tls_ports;
  std::string tcp_greeting;  // sent on every TCP accept before reading ("server speaks first")
  std::string hostname;      // --hostname, else $POD_NAME, else $HOSTNAME, else gethostname()
  std::string version;       // ServiceVersion=
  std::string bind = "0.0.0.0";
  bool help = false;
};

struct ClientOptions {
  std::string url;
  std::string method = "GET";
  std::vector<std::pair<std::string, std::string>> headers;  // -H, in order; "Host" sets the authority
  int count = 1;
  double qps = 0;  // 0: unpaced
  std::chrono::milliseconds timeout{5000};  // the whole batch
  int concurrency = 20;
  std::string body;
  std::string connect_to;  // "host:port": dial here instead of the URL's host
  bool http2 = false;
  bool summary = false;
  bool help = false;
};

// `args` excludes "trellis-echo server". `env` supplies POD_NAME / HOSTNAME;
// `system_hostname` is the last resort (gethostname()).
Result<ServerOptions> parse_server_args(const std::vector<std::string>& args,
                                        const config::Environment& env,
                                        const std::string& system_hostname);
Result<ClientOptions> parse_client_args(const std::vector<std::string>& args);

std::string server_usage();
std::string client_usage();

enum class Scheme { http, grpc, tcp };

// http://host[:port]/path?query, grpc://host:port[/pkg.Service/Method],
// tcp://host:port. IPv6 hosts go in brackets.
struct Url {
  Scheme scheme = Scheme::http;
  std::string host;       // without brackets
  uint16_t port = 0;      // http defaults to 80
  std::string authority;  // host[:port] as written: the default Host / :authority
  std::string target;     // path and query as written ("/" when empty)
};

// Errors: "invalid URL 'x': missing scheme (want http://, grpc:// or tcp://)",
// "... unsupported scheme 'ftp'", "... missing host", "... invalid port '99999'",
// "... grpc:// needs a port", "... unterminated IPv6 literal".
Result<Url> parse_url(std::string_view text);

// "host:port" or "[v6]:port" for --connect-to.
// Error: "invalid address 'x': want host:port".
Result<std::pair<std::string, uint16_t>> parse_host_port(std::string_view text);

}  // namespace trellis::support::echo
