#include "tests/support/echo/options.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <optional>

#include "common/http1/syntax.h"
#include "common/net/address.h"
#include "tests/support/echo/wire.h"

namespace trellis::support::echo {

namespace {

struct Flag {
  std::vector<std::string> names;  // "--port", or "-H" and "--header"
  bool takes_value = true;
  std::function<Status(const std::string& name, std::string_view value)> apply;
};

std::string quoted(std::string_view text) {
  constexpr size_t kMaxShown = 64;  // a hostile megabyte argument is not echoed back whole
  std::string out = "'";
  out.append(text.substr(0, kMaxShown));
  if (text.size() > kMaxShown) out += "...";
  return out + "'";
}

// Walks `args`: flags go to their Flag, everything else to `positional`.
Status parse_flags(const std::vector<std::string>& args, const std::vector<Flag>& flags,
                   const std::function<Status(const std::string&)>& positional, bool* help) {
  bool flags_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-') {
      if (Status s = positional(arg); !s.ok()) return s;
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      *help = true;
      continue;
    }
    const Flag* match = nullptr;
    std::string name;
    std::optional<std::string> value;
    for (const Flag& f : flags) {
      for (const std::string& n : f.names) {
        if (arg == n) {
          match = &f;
        } else if (arg.compare(0, n.size() + 1, n + "=") == 0) {
          match = &f;
          value = arg.substr(n.size() + 1);
        } else if (n.size() == 2 && f.takes_value && arg.compare(0, 2, n) == 0) {
          match = &f;  // a short flag with its value attached: -Hk:v
          value = arg.substr(2);
        }
        if (match != nullptr) {
          name = n;
          break;
        }
      }
      if (match != nullptr) break;
    }
    if (match == nullptr) {
      auto eq = arg.find('=');
      return make_error("unknown flag " + arg.substr(0, eq));
    }
    if (!match->takes_value) {
      if (Status s = match->apply(name, value ? *value : "true"); !s.ok()) return s;
      continue;
    }
    if (!value) {
      if (i + 1 >= args.size()) return make_error(name + ": missing value");
      value = args[++i];
    }
    if (Status s = match->apply(name, *value); !s.ok()) return s;
  }
  return ok_status();
}

Result<long long> parse_int(const std::string& name, std::string_view text, long long min,
                            long long max, std::string_view noun = "an integer") {
  long long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
    return make_error(name + ": expected " + std::string(noun) + " between " + std::to_string(min) +
                      " and " + std::to_string(max) + ", got " + quoted(text));
  }
  return v;
}

Status add_port(const std::string& name, std::string_view text, std::vector<uint16_t>& ports) {
  auto v = parse_int(name, text, 0, 65535, "a port");
  if (!v.ok()) return std::move(v).error();
  ports.push_back(static_cast<uint16_t>(*v));
  return ok_status();
}

Status set_switch(const std::string& name, std::string_view text, bool& field) {
  if (text == "true") {
    field = true;
  } else if (text == "false") {
    field = false;
  } else {
    return make_error(name + ": expected true or false, got " + quoted(text));
  }
  return ok_status();
}

Status set_text(std::string_view text, std::string& field) {
  field = std::string(text);
  return ok_status();
}

// host[:port] or [v6][:port]; the port text is empty when absent.
Result<std::pair<std::string, std::string>> split_authority(std::string_view authority) {
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return make_error("unterminated IPv6 literal");
    std::string host(authority.substr(1, close - 1));
    std::string_view rest = authority.substr(close + 1);
    if (rest.empty()) return std::make_pair(host, std::string());
    if (rest[0] != ':') return make_error("unexpected text after ']'");
    return std::make_pair(host, std::string(rest.substr(1)));
  }
  size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos) return std::make_pair(std::string(authority), std::string());
  if (authority.find(':') != colon) return make_error("IPv6 addresses must be in brackets");
  return std::make_pair(std::string(authority.substr(0, colon)),
                        std::string(authority.substr(colon + 1)));
}

Result<uint16_t> parse_dial_port(std::string_view text) {
  uint32_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v == 0 || v > 65535) {
    return make_error("invalid port " + quoted(text));
  }
  return static_cast<uint16_t>(v);
}

}  // namespace

Result<ServerOptions> parse_server_args(const std::vector<std::string>& args,
                                        const config::Environment& env,
                                        const std::string& system_hostname) {
  ServerOptions o;
  bool http_given = false, grpc_given = false, tcp_given = false;
  std::optional<std::string> hostname;
  std::string ignored_path;
  std::vector<Flag> flags = {
      {{"--port"}, true, [&](const std::string& n, std::string_view v) {
         http_given = true;
         return add_port(n, v, o.http_ports);
       }},
      {{"--grpc"}, true, [&](const std::string& n, std::string_view v) {
         grpc_given = true;
         return add_port(n, v, o.grpc_ports);
       }},
      {{"--tcp"}, true, [&](const std::string& n, std::string_view v) {
         tcp_given = true;
         return add_port(n, v, o.tcp_ports);
       }},
      {{"--tls"}, true, [&](const std::string& n, std::string_view v) { return add_port(n, v, o.tls_ports); }},
      {{"--crt", "--key"}, true, [&](const std::string&, std::string_view v) { return set_text(v, ignored_path); }},
      {{"--tcp-greeting"}, true, [&](const std::string&, std::string_view v) { return set_text(v, o.tcp_greeting); }},
      {{"--hostname"}, true, [&](const std::string& n, std::string_view v) -> Status {
         if (v.empty()) return make_error(n + ": must not be empty");
         hostname = std::string(v);
         return ok_status();
       }},
      {{"--version"}, true, [&](const std::string&, std::string_view v) { return set_text(v, o.version); }},
      {{"--bind"}, true, [&](const std::string& n, std::string_view v) -> Status {
         if (auto a = net::Address::from_ip(v, 0); !a.ok()) return make_error(n + ": " + a.error().message);
         o.bind = std::string(v);
         return ok_status();
       }},
  };
  Status s = parse_flags(
      args, flags,
      [](const std::string& arg) -> Status { return make_error("unexpected argument " + quoted(arg)); },
      &o.help);
  if (!s.ok()) return std::move(s).error();
  if (!http_given) o.http_ports = {8080};
  if (!grpc_given) o.grpc_ports = {7070};
  if (!tcp_given) o.tcp_ports = {9090};
  // A TLS port is also named in --port (Istio's convention); we cannot serve it.
  for (uint16_t tls : o.tls_ports) {
    std::vector<uint16_t> kept;
    for (uint16_t p : o.http_ports) {
      if (p != tls) kept.push_back(p);
    }
    o.http_ports = std::move(kept);
  }
  if (hostname) {
    o.hostname = *hostname;
  } else if (auto pod = env("POD_NAME"); pod && !pod->empty()) {
    o.hostname = *pod;
  } else if (auto host = env("HOSTNAME"); host && !host->empty()) {
    o.hostname = *host;
  } else {
    o.hostname = system_hostname;
  }
  return o;
}

Result<ClientOptions> parse_client_args(const std::vector<std::string>& args) {
  ClientOptions o;
  std::vector<Flag> flags = {
      {{"--method", "-X"}, true, [&](const std::string& n, std::string_view v) -> Status {
         if (!http1::is_token(v)) return make_error(n + ": not a valid method " + quoted(v));
         o.method = std::string(v);
         return ok_status();
       }},
      {{"-H", "--header"}, true, [&](const std::string& n, std::string_view v) -> Status {
         size_t colon = v.find(':');
         if (colon == std::string_view::npos) return make_error(n + ": want key:value, got " + quoted(v));
         std::string_view key = v.substr(0, colon);
         std::string_view value = http1::trim_ows(v.substr(colon + 1));
         if (!http1::is_token(key)) return make_error(n + ": invalid header name " + quoted(key));
         if (!http1::is_field_value(value)) {
           return make_error(n + ": invalid character in the value of " + std::string(key));
         }
         o.headers.emplace_back(std::string(key), std::string(value));
         return ok_status();
       }},
      {{"--count"}, true, [&](const std::string& n, std::string_view v) -> Status {
         auto c = parse_int(n, v, 1, 100000);
         if (!c.ok()) return std::move(c).error();
         o.count = static_cast<int>(*c);
         return ok_status();
       }},
      {{"--concurrency"}, true, [&](const std::string& n, std::string_view v) -> Status {
         auto c = parse_int(n, v, 1, 1000);
         if (!c.ok()) return std::move(c).error();
         o.concurrency = static_cast<int>(*c);
         return ok_status();
       }},
      {{"--qps"}, true, [&](const std::string& n, std::string_view v) -> Status {
         std::string text(v);
         char* end = nullptr;
         double q = text.empty() ? -1 : std::strtod(text.c_str(), &end);
         if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(q) || q < 0) {
           return make_error(n + ": expected a number >= 0, got " + quoted(v));
         }
         o.qps = q;
         return ok_status();
       }},
      {{"--timeout"}, true, [&](const std::string& n, std::string_view v) -> Status {
         auto d = parse_go_duration(v);
         if (!d.ok()) return make_error(n + ": " + d.error().message);
         auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
         if (ms.count() <= 0) return make_error(n + ": must be at least 1ms, got " + quoted(v));
         o.timeout = ms;
         return ok_status();
       }},
      {{"--body"}, true, [&](const std::string&, std::string_view v) { return set_text(v, o.body); }},
      {{"--connect-to"}, true, [&](const std::string& n, std::string_view v) -> Status {
         if (auto a = parse_host_port(v); !a.ok()) return make_error(n + ": " + a.error().message);
         o.connect_to = std::string(v);
         return ok_status();
       }},
      {{"--http2"}, false, [&](const std::string& n, std::string_view v) { return set_switch(n, v, o.http2); }},
      {{"--summary"}, false, [&](const std::string& n, std::string_view v) { return set_switch(n, v, o.summary); }},
  };
  bool have_url = false;
  Status s = parse_flags(
      args, flags,
      [&](const std::string& arg) -> Status {
        if (have_url) {
          return make_error("unexpected argument " + quoted(arg) + " (the URL is " + quoted(o.url) + ")");
        }
        have_url = true;
        o.url = arg;
        return ok_status();
      },
      &o.help);
  if (!s.ok()) return std::move(s).error();
  if (o.help) return o;
  if (!have_url) return make_error("missing URL");
  if (auto u = parse_url(o.url); !u.ok()) return std::move(u).error();
  return o;
}

Result<Url> parse_url(std::string_view text) {
  auto fail = [&](std::string_view reason) {
    return make_error("invalid URL " + quoted(text) + ": " + std::string(reason));
  };
  size_t sep = text.find("://");
  if (sep == std::string_view::npos) return fail("missing scheme (want http://, grpc:// or tcp://)");
  std::string_view scheme = text.substr(0, sep);
  Url url;
  if (scheme == "http") {
    url.scheme = Scheme::http;
  } else if (scheme == "grpc") {
    url.scheme = Scheme::grpc;
  } else if (scheme == "tcp") {
    url.scheme = Scheme::tcp;
  } else {
    return fail("unsupported scheme " + quoted(scheme) + " (want http, grpc or tcp)");
  }
  std::string_view rest = text.substr(sep + 3);
  size_t path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  std::string_view target = path_start == std::string_view::npos ? "" : rest.substr(path_start);
  if (authority.empty()) return fail("missing host");
  auto parts = split_authority(authority);
  if (!parts.ok()) return fail(parts.error().message);
  url.host = parts->first;
  if (url.host.empty()) return fail("missing host");
  if (parts->second.empty()) {
    if (url.scheme != Scheme::http) return fail(std::string(scheme) + ":// needs a port");
    url.port = 80;
  } else {
    auto port = parse_dial_port(parts->second);
    if (!port.ok()) return fail(port.error().message);
    url.port = *port;
  }
  url.authority = std::string(authority);
  for (char c : target) {
    if (!http1::is_target_char(c)) return fail("invalid character in path");
  }
  url.target = target.empty() ? "/" : target[0] == '?' ? "/" + std::string(target) : std::string(target);
  return url;
}

Result<std::pair<std::string, uint16_t>> parse_host_port(std::string_view text) {
  auto fail = [&] { return make_error("invalid address " + quoted(text) + ": want host:port"); };
  auto parts = split_authority(text);
  if (!parts.ok() || parts->first.empty() || parts->second.empty()) return fail();
  auto port = parse_dial_port(parts->second);
  if (!port.ok()) return fail();
  return std::make_pair(parts->first, *port);
}

std::string server_usage() {
  return "usage: trellis-echo server [flags]\n"
         "  --port N          HTTP/1.1 and h2c port, repeatable (default 8080; 0 = any free port)\n"
         "  --grpc N          gRPC (h2c) port, repeatable (default 7070)\n"
         "  --tcp N           TCP echo port, repeatable (default 9090)\n"
         "  --tcp-greeting T  send T on every TCP accept before reading\n"
         "  --hostname NAME   reported as Hostname= (default $POD_NAME, $HOSTNAME, gethostname())\n"
         "  --version V       reported as ServiceVersion=\n"
         "  --bind IP         listen address (default 0.0.0.0)\n"
         "  --tls N, --crt F, --key F  accepted for Istio compatibility; TLS ports are not served\n"
         "The first line on stdout is 'listening http=ADDR[,ADDR] grpc=... tcp=...'.\n";
}

std::string client_usage() {
  return "usage: trellis-echo client <url> [flags]\n"
         "  url: http://host[:port]/path?query, grpc://host:port[/pkg.Service/Method], tcp://host:port\n"
         "  --method M        HTTP method (default GET)\n"
         "  -H key:value      request header / gRPC metadata, repeatable; Host sets the authority\n"
         "  --count N         requests (default 1)\n"
         "  --qps Q           pace requests (default 0: unpaced)\n"
         "  --timeout D       bound for the whole batch (default 5s)\n"
         "  --concurrency N   requests in flight (default 20)\n"
         "  --body TEXT       request body (gRPC: the Echo message; TCP: the bytes sent)\n"
         "  --connect-to H:P  dial H:P instead of the URL's host, keeping Host\n"
         "  --http2           HTTP over h2c (prior knowledge) on one shared connection\n"
         "  --summary         finish with per-Hostname and per-status counts\n";
}

}  // namespace trellis::support::echo
