#include "tests/support/echo/service.h"

#include <algorithm>
#include <charconv>
#include <optional>

#include "common/http1/syntax.h"
#include "tests/support/echo/wire.h"

namespace trellis::support::echo {

namespace {

constexpr std::string_view kEchoPath = "/proto.EchoTestService/Echo";
constexpr std::string_view kEchoService = "proto.EchoTestService";
// Bounds the ?codes= counters a client can make us keep.
constexpr size_t kMaxCodeCounters = 1024;

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  while (true) {
    size_t at = text.find(sep);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

std::optional<int> parse_int(std::string_view text) {
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

bool is_framing_field(std::string_view name) {
  return http::iequals(name, "content-length") || http::iequals(name, "transfer-encoding") ||
         http::iequals(name, "connection");
}

void field(std::string& out, std::string_view key, std::string_view value) {
  out.append(key).append("=").append(value).append("\n");
}

// A request's headers as Go's net/http presents them: canonical keys, sorted,
// values of one key in arrival order; Transfer-Encoding is not a header there.
std::vector<http::Header> go_request_headers(const http::HeaderMap& headers) {
  std::vector<http::Header> out;
  for (const http::Header& h : headers) {
    if (http::iequals(h.name, "transfer-encoding")) continue;
    out.push_back({canonical_header_key(h.name), h.value});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const http::Header& a, const http::Header& b) { return a.name < b.name; });
  return out;
}

// Headers grpc-go keeps out of the metadata it hands to a handler.
bool is_reserved_grpc_header(std::string_view name) {
  return name == "te" || name == "grpc-timeout" || name == "grpc-encoding" ||
         name == "grpc-message-type" || name == "grpc-status" || name == "grpc-message";
}

GrpcReply grpc_error(uint32_t status, std::string message) {
  GrpcReply r;
  r.status = status;
  r.message = std::move(message);
  return r;
}

}  // namespace

Result<std::vector<WeightedCode>> parse_codes(std::string_view spec) {
  std::vector<WeightedCode> codes;
  long long total = 0;
  for (std::string_view item : split(spec, ',')) {
    auto parts = split(item, ':');
    if (parts.size() > 2) return make_error("invalid '" + std::string(item) + "' (want code or code:count)");
    auto code = parse_int(parts[0]);
    if (!code) return make_error("invalid '" + std::string(item) + "' (want code or code:count)");
    if (*code < 200 || *code >= 600) return make_error("invalid HTTP response code " + std::to_string(*code));
    int weight = 1;
    if (parts.size() == 2) {
      auto w = parse_int(parts[1]);
      if (!w) return make_error("invalid '" + std::string(item) + "' (want code or code:count)");
      if (*w < 0 || *w > 1000000) return make_error("invalid count " + std::to_string(*w));
      weight = *w;
    }
    total += weight;
    codes.push_back({*code, weight});
  }
  if (total == 0) return make_error("the counts add up to 0");
  return codes;
}

Result<std::vector<http::Header>> parse_response_headers(std::string_view spec) {
  std::vector<http::Header> headers;
  for (std::string_view item : split(spec, ',')) {
    size_t colon = item.find(':');
    if (colon == std::string_view::npos) {
      return make_error("invalid '" + std::string(item) + "' (want name:value)");
    }
    std::string_view name = item.substr(0, colon);
    std::string_view value = http1::trim_ows(item.substr(colon + 1));
    if (!http1::is_token(name)) return make_error("invalid header name '" + std::string(name) + "'");
    if (!http1::is_field_value(value)) return make_error("invalid value for " + std::string(name));
    if (is_framing_field(name)) return make_error(std::string(name) + " is set by the server");
    auto same = std::find_if(headers.begin(), headers.end(),
                             [&](const http::Header& h) { return http::iequals(h.name, name); });
    if (same != headers.end()) headers.erase(same);
    headers.push_back({std::string(name), std::string(value)});
  }
  return headers;
}

int EchoService::next_code(std::string_view spec, const std::vector<WeightedCode>& codes) {
  if (code_counters_.size() >= kMaxCodeCounters) code_counters_.clear();
  uint64_t n = code_counters_[std::string(spec)]++;
  uint64_t total = 0;
  for (const WeightedCode& c : codes) total += static_cast<uint64_t>(c.weight);
  uint64_t slot = n % total;
  for (const WeightedCode& c : codes) {
    if (slot < static_cast<uint64_t>(c.weight)) return c.code;
    slot -= static_cast<uint64_t>(c.weight);
  }
  return codes.back().code;  // unreachable: the weights add up to total
}

HttpReply EchoService::http(const http::RequestHead& head, std::string_view proto, uint16_t port,
                            std::string_view peer_ip, uint64_t body_length) {
  HttpReply reply;
  reply.headers.add("Content-Type", "application/text");
  if (head.path() == "/healthz") {
    reply.body = "ok\n";
    return reply;
  }

  // Knob errors are written at the top of the body, as Istio does, and turn
  // the answer into a 400 so that a typo never looks like a success.
  std::string errors;
  auto knob = [&](std::string_view name) -> std::optional<std::string> {
    auto v = query_value(head.query(), name);
    if (!v.ok()) {
      errors += "query error: " + v.error().message + "\n";
      return std::nullopt;
    }
    return *v;
  };
  if (auto delay = knob("delay"); delay && !delay->empty()) {
    auto d = parse_go_duration(*delay);
    if (!d.ok()) {
      errors += "delay error: " + d.error().message + "\n";
    } else if (d->count() < 0) {
      errors += "delay error: must not be negative, got '" + *delay + "'\n";
    } else if (*d > kMaxDelay) {
      errors += "delay error: at most 5m, got '" + *delay + "'\n";
    } else {
      reply.delay = std::chrono::ceil<std::chrono::milliseconds>(*d);
    }
  }
  if (auto spec = knob("headers"); spec && !spec->empty()) {
    auto headers = parse_response_headers(*spec);
    if (!headers.ok()) {
      errors += "response headers error: " + headers.error().message + "\n";
    } else {
      for (const http::Header& h : *headers) reply.headers.set(h.name, h.value);
    }
  }
  if (auto spec = knob("codes"); spec && !spec->empty()) {
    auto codes = parse_codes(*spec);
    if (!codes.ok()) {
      errors += "codes error: " + codes.error().message + "\n";
    } else {
      reply.status = next_code(*spec, *codes);
    }
  }
  uint64_t padding = 0;
  if (auto size = knob("size"); size && !size->empty()) {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(size->data(), size->data() + size->size(), n);
    if (ec != std::errc() || end != size->data() + size->size() || n > kMaxPadding) {
      errors += "size error: expected an integer between 0 and " + std::to_string(kMaxPadding) +
                ", got '" + *size + "'\n";
    } else {
      padding = n;
    }
  }
  if (!errors.empty()) {
    reply.status = 400;
    reply.delay = std::chrono::milliseconds(0);
    padding = 0;
  }

  std::string& body = reply.body;
  body = errors;
  field(body, "ServiceVersion", version_);
  field(body, "ServicePort", std::to_string(port));
  field(body, "Host", head.authority);
  field(body, "URL", head.target);
  field(body, "Method", head.method);
  field(body, "Proto", proto);
  field(body, "IP", peer_ip);
  field(body, "BodyLength", std::to_string(body_length));
  for (const http::Header& h : go_request_headers(head.headers)) {
    body.append("RequestHeader=").append(h.name).append(":").append(h.value).append("\n");
  }
  field(body, "Hostname", hostname_);
  if (padding > 0) {
    body.append(padding - 1, 'x');
    body += '\n';
  }
  return reply;
}

GrpcReply EchoService::grpc(const http::RequestHead& head, uint16_t port, std::string_view peer_ip,
                            std::string_view body) {
  std::string_view path = head.path();
  if (path != kEchoPath) {
    // grpc-go's wording, so that clients see familiar errors.
    size_t slash = path.size() > 1 ? path.find('/', 1) : std::string_view::npos;
    if (path.empty() || path[0] != '/' || slash == std::string_view::npos) {
      return grpc_error(grpc_status::unimplemented, "malformed method name: \"" + std::string(path) + "\"");
    }
    std::string_view service = path.substr(1, slash - 1);
    if (service != kEchoService) {
      return grpc_error(grpc_status::unimplemented, "unknown service " + std::string(service));
    }
    return grpc_error(grpc_status::unimplemented, "unknown method " + std::string(path.substr(slash + 1)) +
                                                      " for service " + std::string(service));
  }
  auto messages = split_grpc_frames(body);
  if (!messages.ok()) {
    return grpc_error(static_cast<uint32_t>(messages.error().code), messages.error().message);
  }
  if (messages->size() != 1) {
    return grpc_error(grpc_status::internal, "grpc: a unary call takes exactly one request message, got " +
                                                 std::to_string(messages->size()));
  }
  auto message = decode_echo_message(messages->front());
  if (!message.ok()) {
    return grpc_error(grpc_status::internal, "grpc: error unmarshalling request: " + message.error().message);
  }

  std::vector<http::Header> metadata;
  for (const http::Header& h : head.headers) {
    std::string key = h.name;
    std::transform(key.begin(), key.end(), key.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
    if (is_reserved_grpc_header(key)) continue;
    if (key.size() >= 4 && key.compare(key.size() - 4, 4, "-bin") == 0) continue;
    metadata.push_back({std::move(key), h.value});
  }
  std::stable_sort(metadata.begin(), metadata.end(),
                   [](const http::Header& a, const http::Header& b) { return a.name < b.name; });

  std::string text;
  field(text, "Host", head.authority);
  for (const http::Header& h : metadata) {
    text.append("RequestHeader=").append(h.name).append(":").append(h.value).append("\n");
  }
  field(text, "StatusCode", "200");
  field(text, "ServiceVersion", version_);
  field(text, "ServicePort", std::to_string(port));
  field(text, "IP", peer_ip);
  field(text, "Proto", "GRPC");
  field(text, "Echo", *message);
  field(text, "Hostname", hostname_);

  GrpcReply reply;
  reply.frame = grpc_frame(encode_echo_message(text));
  return reply;
}

}  // namespace trellis::support::echo
