#include "proxy/config/proxy_config.h"

#include <charconv>

#include "common/gateway/duration.h"
#include "common/net/address.h"

namespace trellis::proxy {
namespace {

Result<double> parse_ratio(std::string_view text) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !(v >= 0.0 && v <= 1.0)) {
    return make_error("expected a ratio between 0 and 1, got '" + std::string(text) + "'");
  }
  return v;
}

bool is_dns_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i <= host.size(); ++i) {
    if (i == host.size() || host[i] == '.') {
      if (label == 0 || label > 63 || host[i - 1] == '-' || host[i - label] == '-') return false;
      label = 0;
      continue;
    }
    char c = host[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) {
      return false;
    }
    ++label;
  }
  // An all-numeric last label is a mistyped IPv4 address, not a name.
  size_t last = host.rfind('.') + 1;
  return host.find_first_not_of("0123456789", last) != std::string_view::npos;
}

// A Kubernetes namespace: an RFC 1123 label.
Result<std::string> parse_namespace(std::string_view text) {
  bool ok = !text.empty() && text.size() <= 63 && text.front() != '-' && text.back() != '-';
  for (char c : text) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  if (!ok) {
    return make_error("invalid value '" + std::string(text) +
                      "' (want a DNS label: 1-63 lowercase letters, digits and '-', starting and ending "
                      "with a letter or digit)");
  }
  return std::string(text);
}

Result<std::chrono::milliseconds> parse_positive_duration(std::string_view text) {
  auto d = gateway::parse_duration(text);
  if (!d.ok()) return d;
  if (d->count() == 0) return make_error("must be positive, got '" + std::string(text) + "'");
  return d;
}

const config::Spec<ProxyConfig>& spec() {
  using C = ProxyConfig;
  static const config::Spec<C> s = [] {
    config::Spec<C> s("trellis-proxy",
                      "The Trellis sidecar: routes the pod's outbound traffic by the mesh's route table and "
                      "forwards inbound traffic to the app.");
    s.option({"--outbound-port", "TRELLIS_OUTBOUND_PORT", "listener for redirected outbound traffic", "15001"},
             config::port(&C::outbound_port));
    s.option({"--inbound-port", "TRELLIS_INBOUND_PORT", "listener for redirected inbound traffic", "15006"},
             config::port(&C::inbound_port));
    s.option({"--admin-port", "TRELLIS_ADMIN_PORT",
              "admin server: /metrics, /ready, /live, /config, POST /drain", "15020"},
             config::port(&C::admin_port));
    s.option({"--workers", "TRELLIS_WORKERS", "workers, each with its own loop and listeners (1: on the main thread)", "2"},
             config::integer(&C::workers, 1, 64));
    s.option({"--log-level", "TRELLIS_LOG_LEVEL", "debug, info, warn or error", "info"},
             config::one_of(&C::log_level, {{"debug", log::Level::debug},
                                            {"info", log::Level::info},
                                            {"warn", log::Level::warn},
                                            {"error", log::Level::error}}));
    s.option({"--routes-file", "TRELLIS_ROUTES_FILE",
              "route table (JSON, docs/route-table.md); reloaded when replaced by an atomic rename. "
              "Exactly one of --routes-file and --controller",
              std::nullopt},
             config::path(&C::routes_file));
    s.option({"--controller", "TRELLIS_CONTROLLER",
              "trellis-controller's route-table stream (host:port, e.g. "
              "trellis-controller.trellis-system:15010); the last table is kept while it is "
              "unreachable. Exactly one of --routes-file and --controller",
              std::nullopt},
             config::custom(&C::controller, "<host:port>", parse_host_port));
    s.option({"--namespace", "TRELLIS_NAMESPACE",
              "this pod's namespace, whose route table --controller streams (the injector sets it "
              "from the downward API)",
              std::nullopt},
             config::custom(&C::namespace_, "<namespace>", parse_namespace));
    s.option({"--inbound-target-ip", "TRELLIS_INBOUND_TARGET_IP",
              "inbound traffic goes to this IP on its original port", "127.0.0.1"},
             config::custom(&C::inbound_target_ip, "<ip>", [](std::string_view text) -> Result<std::string> {
               auto a = net::Address::from_ip(text, 0);
               if (!a.ok()) return std::move(a).error();
               return std::string(text);
             }));
    s.option({"--detect-timeout", "TRELLIS_DETECT_TIMEOUT",
              "protocol detection gives up after this (server-speaks-first protocols)", "500ms"},
             config::duration(&C::detect_timeout, parse_positive_duration));
    s.option({"--connect-timeout", "TRELLIS_CONNECT_TIMEOUT", "connecting to an endpoint", "1s"},
             config::duration(&C::connect_timeout, parse_positive_duration));
    s.option({"--header-timeout", "TRELLIS_HEADER_TIMEOUT", "a request head must arrive within this", "10s"},
             config::duration(&C::header_timeout, parse_positive_duration));
    s.option({"--idle-timeout", "TRELLIS_IDLE_TIMEOUT", "connections idle this long are closed", "5m"},
             config::duration(&C::idle_timeout, parse_positive_duration));
    s.option({"--drain-timeout", "TRELLIS_DRAIN_TIMEOUT",
              "on SIGTERM or POST /drain, in-flight requests get this long", "30s"},
             config::duration(&C::drain_timeout, parse_positive_duration));
    s.option({"--retry-buffer-bytes", "TRELLIS_RETRY_BUFFER_BYTES",
              "request bodies up to this size are buffered so they can be retried", "65536"},
             config::integer(&C::retry_buffer_bytes, uint64_t{0}, uint64_t{16} * 1024 * 1024));
    s.option({"--retry-budget-ratio", "TRELLIS_RETRY_BUDGET_RATIO",
              "retries allowed as a share of requests (per route)", "0.2"},
             config::custom(&C::retry_budget_ratio, "<ratio>", parse_ratio));
    s.option({"--retry-budget-min-per-second", "TRELLIS_RETRY_BUDGET_MIN_PER_SECOND",
              "retries always allowed per second (per route)", "10"},
             config::integer(&C::retry_budget_min_per_second, 0, 100000));
    return s;
  }();
  return s;
}

}  // namespace

std::string HostPort::to_string() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<HostPort> parse_host_port(std::string_view text) {
  auto invalid = [&](const std::string& why) {
    return make_error("invalid address '" + std::string(text) + "': " + why);
  };
  HostPort out;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return invalid("missing ']'");
    out.host = std::string(text.substr(1, close - 1));
    if (close + 1 >= text.size() || text[close + 1] != ':') return invalid("missing port");
    port = text.substr(close + 2);
    if (!net::Address::from_ip(out.host, 0).ok() || out.host.find(':') == std::string::npos) {
      return invalid("'" + out.host + "' is not an IPv6 address");
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return invalid("missing port");
    out.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) {
      return invalid("IPv6 addresses must be in brackets, as in [::1]:15010");
    }
    if (!net::Address::from_ip(out.host, 0).ok() && !is_dns_name(out.host)) {
      return invalid("invalid host '" + out.host + "' (want an IP address or a DNS name)");
    }
  }
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return invalid("invalid port '" + std::string(port) + "'");
  }
  out.port = static_cast<uint16_t>(value);
  return out;
}

Result<ParsedProxyConfig> parse_proxy_config(const std::vector<std::string>& args,
                                             const config::Environment& env) {
  auto parsed = spec().parse(args, env);
  if (!parsed.ok()) return std::move(parsed).error();
  ParsedProxyConfig out;
  out.help = parsed->help;
  if (out.help) return out;
  out.config = std::move(parsed->config);
  const ProxyConfig& c = out.config;
  bool from_file = !c.routes_file.empty();
  bool from_controller = c.controller.port != 0;
  if (from_file && from_controller) {
    return make_error("--routes-file and --controller are mutually exclusive");
  }
  if (!from_file && !from_controller) {
    return make_error(
        "one of --routes-file or --controller is required (or set TRELLIS_ROUTES_FILE or "
        "TRELLIS_CONTROLLER)");
  }
  if (from_controller && c.namespace_.empty()) {
    return make_error("--namespace: required with --controller (or set TRELLIS_NAMESPACE)");
  }
  if (c.outbound_port == c.inbound_port || c.outbound_port == c.admin_port ||
      c.inbound_port == c.admin_port) {
    return make_error("--outbound-port, --inbound-port and --admin-port must all differ");
  }
  return out;
}

std::string proxy_help_text() { return spec().help(); }

}  // namespace trellis::proxy
