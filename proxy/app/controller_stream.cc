#include "proxy/app/controller_stream.h"

#include <netdb.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <random>

#include "common/log/log.h"

namespace trellis::proxy::app {

Status validate(const ControllerStreamOptions& o) {
  if (o.controller.port == 0) return make_error("controller: port must be set");
  if (o.ns.empty()) return make_error("namespace must not be empty");
  if (o.connect_timeout.count() <= 0) return make_error("connect_timeout must be positive");
  if (o.initial_backoff.count() <= 0) return make_error("initial_backoff must be positive");
  if (o.max_backoff < o.initial_backoff) {
    return make_error("max_backoff must not be less than initial_backoff");
  }
  if (o.idle_timeout.count() <= 0) return make_error("idle_timeout must be positive");
  return ok_status();
}

std::chrono::milliseconds reconnect_delay(const ControllerStreamOptions& options, int failures,
                                          double r) {
  double base = static_cast<double>(options.initial_backoff.count());
  double cap = static_cast<double>(options.max_backoff.count());
  for (int i = 1; i < failures && base < cap; ++i) base *= 2;
  base = std::min(base, cap);
  return std::chrono::milliseconds(static_cast<int64_t>(base * (0.5 + std::clamp(r, 0.0, 1.0) / 2)));
}

// A name resolution in flight. libuv calls back even when cancelled, so it
// owns itself; the stream only unhooks itself when it goes first.
struct ControllerStream::Lookup {
  uv_getaddrinfo_t request;
  ControllerStream* owner;

  static void done(uv_getaddrinfo_t* request, int status, struct addrinfo* result) {
    Lookup* lookup = reinterpret_cast<Lookup*>(reinterpret_cast<char*>(request) -
                                               offsetof(Lookup, request));
    ControllerStream* owner = lookup->owner;
    delete lookup;
    if (owner != nullptr) {
      owner->lookup_ = nullptr;
      owner->resolved(status, result);
    }
    uv_freeaddrinfo(result);
  }
};

ControllerStream::ControllerStream(event::EventLoop& loop, ControllerStreamOptions options,
                                   OnTable on_table)
    : loop_(loop),
      options_(std::move(options)),
      on_table_(std::move(on_table)),
      retry_timer_(loop, [this] { connect(); }) {
  if (!options_.random) {
    auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
    options_.random = [engine] { return std::uniform_real_distribution<double>(0, 1)(*engine); };
  }
}

ControllerStream::~ControllerStream() {
  if (lookup_ != nullptr) {
    lookup_->owner = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&lookup_->request));
  }
  attempt_.reset();
}

Result<std::unique_ptr<ControllerStream>> ControllerStream::start(event::EventLoop& loop,
                                                                  ControllerStreamOptions options,
                                                                  metrics::Registry& registry,
                                                                  OnTable on_table) {
  RETURN_IF_ERROR(validate(options));
  std::unique_ptr<ControllerStream> s(
      new ControllerStream(loop, std::move(options), std::move(on_table)));
  ASSIGN_OR_RETURN(auto connected,
                   registry.gauge("trellis_route_table_stream_connected",
                                  "1 while the controller's route-table stream is open."));
  ASSIGN_OR_RETURN(s->connected_gauge_, connected.with_labels({}));
  ASSIGN_OR_RETURN(auto connects,
                   registry.counter("trellis_route_table_stream_connects_total",
                                    "Attempts to open the controller's route-table stream.",
                                    {"result"}));
  ASSIGN_OR_RETURN(s->connects_ok_, connects.with_labels({"ok"}));
  ASSIGN_OR_RETURN(s->connects_failed_, connects.with_labels({"error"}));
  ASSIGN_OR_RETURN(auto received,
                   registry.counter("trellis_route_table_received_total",
                                    "Route tables received from the controller and installed."));
  ASSIGN_OR_RETURN(s->received_, received.with_labels({}));
  ASSIGN_OR_RETURN(auto errors, registry.counter("trellis_route_table_errors_total",
                                                 "Route tables rejected; the previous table stays "
                                                 "active.",
                                                 {"reason"}));
  ASSIGN_OR_RETURN(s->invalid_, errors.with_labels({"invalid"}));
  s->retry_timer_.start(std::chrono::milliseconds(0));
  return s;
}

void ControllerStream::connect() {
  auto ip = net::Address::from_ip(options_.controller.host, options_.controller.port);
  if (ip.ok()) {
    dial(*ip);
    return;
  }
  auto* lookup = new Lookup{};
  lookup->owner = this;
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(loop_.uv(), &lookup->request, &Lookup::done,
                          options_.controller.host.c_str(), nullptr, &hints);
  if (rc != 0) {
    delete lookup;
    on_attempt_over("controller " + options_.controller.to_string() + ": resolve: " +
                    uv_strerror(rc));
    return;
  }
  lookup_ = lookup;
}

void ControllerStream::resolved(int status, const struct addrinfo* result) {
  std::string prefix = "controller " + options_.controller.to_string() + ": resolve: ";
  if (status != 0) {
    on_attempt_over(prefix + uv_strerror(status));
    return;
  }
  // Prefer IPv4, as most clusters are.
  const struct addrinfo* chosen = nullptr;
  for (const struct addrinfo* a = result; a != nullptr; a = a->ai_next) {
    if (chosen == nullptr || (a->ai_family == AF_INET && chosen->ai_family != AF_INET)) chosen = a;
  }
  if (chosen == nullptr) {
    on_attempt_over(prefix + "no addresses");
    return;
  }
  auto address = net::Address::from_sockaddr(chosen->ai_addr, chosen->ai_addrlen);
  if (address.ok()) address = net::Address::from_ip(address->ip(), options_.controller.port);
  if (!address.ok()) {
    on_attempt_over(prefix + address.error().message);
    return;
  }
  dial(*address);
}

void ControllerStream::dial(const net::Address& address) {
  std::string dialled = address.to_string();
  attempt_address_ = dialled != options_.controller.to_string() ? dialled : "";
  RouteTableCallOptions call;
  call.ns = options_.ns;
  call.authority = options_.controller.to_string();
  call.user_agent = "trellis-proxy";
  call.connect_timeout = options_.connect_timeout;
  call.idle_timeout = options_.idle_timeout;
  auto started = RouteTableCall::start(loop_, address, std::move(call), *this);
  if (!started.ok()) {
    on_attempt_over(started.error().message);
    return;
  }
  attempt_ = std::move(*started);
}

void ControllerStream::on_streaming() {
  connected_ = true;
  connected_gauge_.set(1);
  connects_ok_.inc();
  log::info("route-table stream open", {{"controller", options_.controller.to_string()},
                                        {"namespace", options_.ns}});
}

// Splits the body into lines without copying more than the line itself.
void ControllerStream::on_body(const char* data, size_t length) {
  const size_t max = options_.limits.max_bytes;
  while (length > 0) {
    const char* newline = static_cast<const char*>(std::memchr(data, '\n', length));
    size_t take = newline != nullptr ? static_cast<size_t>(newline - data) : length;
    if (!skipping_ && line_.size() + take > max) {
      line_.clear();
      line_.shrink_to_fit();
      skipping_ = true;
      on_line_too_long();
    }
    if (!skipping_) line_.append(data, take);
    if (newline == nullptr) return;
    if (!skipping_) on_line(line_);
    line_.clear();
    skipping_ = false;
    data += take + 1;
    length -= take + 1;
  }
}

void ControllerStream::on_line(std::string_view line) {
  if (line.empty()) return;  // a heartbeat
  auto parsed = routes::parse(line, options_.limits);
  if (!parsed.ok()) {
    reject(parsed.error().message);
    return;
  }
  if ((*parsed)->ns != options_.ns) {
    reject("the table is for namespace '" + (*parsed)->ns + "', not '" + options_.ns + "'");
    return;
  }
  if ((*parsed)->version == version_) return;
  LoadedTable table;
  table.routes = std::move(*parsed);
  table.compiled = router::Table::compile(table.routes);
  version_ = table.routes->version;
  failures_ = 0;
  last_error_.clear();
  received_.inc();
  log::info("route table received", {{"version", version_},
                                     {"namespace", table.routes->ns},
                                     {"services", table.routes->services.size()}});
  on_table_(std::move(table));
}

void ControllerStream::on_line_too_long() {
  reject("route table larger than " + std::to_string(options_.limits.max_bytes) + " bytes");
}

void ControllerStream::reject(const std::string& why) {
  invalid_.inc();
  if (why == last_error_) return;
  last_error_ = why;
  log::error("route table rejected; keeping the previous one",
             {{"controller", options_.controller.to_string()}, {"error", why}});
}

void ControllerStream::on_over(const std::string& why) {
  on_attempt_over("controller " + options_.controller.to_string() +
                  (attempt_address_.empty() ? "" : " (" + attempt_address_ + ")") + ": " + why);
}

void ControllerStream::on_attempt_over(const std::string& why) {
  if (attempt_) loop_.delete_later(std::move(attempt_));
  // A partial line from the broken connection must not be glued to the next.
  line_.clear();
  line_.shrink_to_fit();
  skipping_ = false;
  ++failures_;
  std::chrono::milliseconds delay = reconnect_delay(options_, failures_, options_.random());
  if (connected_) {
    connected_ = false;
    connected_gauge_.set(0);
    log::warn("route-table stream lost; keeping the current table",
              {{"error", why}, {"version", version_}, {"retry_ms", static_cast<int64_t>(delay.count())}});
  } else {
    connects_failed_.inc();
    log::warn("route-table stream not available; keeping the current table",
              {{"error", why}, {"version", version_}, {"retry_ms", static_cast<int64_t>(delay.count())}});
  }
  retry_timer_.start(delay);
}

}  // namespace trellis::proxy::app
