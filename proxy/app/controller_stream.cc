#include "proxy/app/controller_stream.h"

#include <netdb.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <random>

#include "common/http2/session.h"
#include "common/log/log.h"
#include "common/net/tcp_connection.h"

namespace trellis::proxy::app {
namespace {

constexpr char kPath[] = "/v1/route-table";
// Tables can be megabytes; we hand every byte on at once (to the line
// buffer), so large windows cost no memory and save round trips.
constexpr uint32_t kReceiveWindow = 8u << 20;
// How much of a refusal's body goes into the log.
constexpr size_t kMaxErrorBody = 512;

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, kMaxErrorBody)) out += (c >= 0x20 && c < 0x7f) ? c : ' ';
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

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

// One connection and its one request; reports to the stream until it is
// over, then is dropped (on the next loop turn: it may be inside a callback).
class ControllerStream::Attempt final : private net::TcpConnection::Handler,
                                        private http2::SessionHandler {
 public:
  explicit Attempt(ControllerStream& owner) : owner_(owner) {}

  Status dial(const net::Address& address) {
    if (address.to_string() != owner_.options_.controller.to_string()) address_ = address.to_string();
    net::ConnectionOptions options;
    options.idle_timeout = owner_.options_.idle_timeout;
    ASSIGN_OR_RETURN(tcp_, net::TcpConnection::connect(
                               owner_.loop_, address, owner_.options_.connect_timeout,
                               [this](const Status& s) { connected(s); }, options));
    return ok_status();
  }

 private:
  void connected(const Status& status) {
    if (!status.ok()) {
      over(status.error().message);
      return;
    }
    http2::SessionConfig config;
    config.role = http2::Role::client;
    config.initial_stream_window = kReceiveWindow;
    config.connection_window = kReceiveWindow;
    auto session = http2::Session::create(config, *this);
    if (!session.ok()) {
      over(session.error().message);
      return;
    }
    session_ = std::move(*session);
    if (Status s = tcp_->start(*this); !s.ok()) {
      over(s.error().message);
      return;
    }
    http::RequestHead head;
    head.method = "GET";
    head.target = std::string(kPath) + "?namespace=" + owner_.options_.ns;
    head.authority = owner_.options_.controller.to_string();
    head.scheme = "http";
    head.version = http::Version::http2;
    head.headers.add("accept", "application/x-ndjson");
    head.headers.add("user-agent", "trellis-proxy");
    auto id = session_->submit_request(head, false);
    if (!id.ok()) {
      over(id.error().message);
      return;
    }
    flush();
  }

  void flush() {
    if (over_ || in_session_ || !session_) return;
    std::string out;
    in_session_ = true;
    Status produced = session_->produce(out);
    in_session_ = false;
    if (over_) return;
    if (!out.empty()) {
      if (Status w = tcp_->write(out); !w.ok()) {
        over(w.error().message);
        return;
      }
    }
    if (!produced.ok()) {
      over(produced.error().message);
    } else if (session_->is_closed()) {
      over("the controller closed the connection");
    }
  }

  // Reports the end once; the stream drops this attempt.
  void over(const std::string& why) {
    if (over_) return;
    over_ = true;
    owner_.on_attempt_over("controller " + owner_.options_.controller.to_string() +
                           (address_.empty() ? "" : " (" + address_ + ")") + ": " + why);
  }

  // Splits the body into lines without copying more than the line itself.
  void body(const char* data, size_t length) {
    const size_t max = owner_.options_.limits.max_bytes;
    while (length > 0 && !over_) {
      const char* newline = static_cast<const char*>(std::memchr(data, '\n', length));
      size_t take = newline != nullptr ? static_cast<size_t>(newline - data) : length;
      if (!skipping_ && line_.size() + take > max) {
        line_.clear();
        line_.shrink_to_fit();
        skipping_ = true;
        owner_.on_line_too_long();
      }
      if (!skipping_) line_.append(data, take);
      if (newline == nullptr) return;
      if (!skipping_) owner_.on_line(line_);
      line_.clear();
      skipping_ = false;
      data += take + 1;
      length -= take + 1;
    }
  }

  // net::TcpConnection::Handler
  void on_data(const char* data, size_t length) override {
    if (over_) return;
    in_session_ = true;
    Status received = session_->receive(data, length);
    in_session_ = false;
    if (over_) return;
    if (!received.ok()) {
      over(received.error().message);
      return;
    }
    flush();
  }
  void on_eof() override { over("the controller closed the connection"); }
  void on_error(const Error& error) override { over(error.message); }
  void on_idle_timeout() override {
    over("nothing received for " + ms_text(owner_.options_.idle_timeout));
  }

  // http2::SessionHandler
  void on_response_head(int32_t, http::ResponseHead&& head, bool end_stream) override {
    if (over_ || head.status < 200) return;
    status_ = head.status;
    if (status_ == 200) {
      owner_.on_streaming();
    } else if (end_stream) {
      over("request refused: " + std::to_string(status_));
    }
  }
  void on_data(int32_t id, const char* data, size_t len) override {
    (void)session_->consume(id, len);
    if (over_) return;
    if (status_ == 200) {
      body(data, len);
    } else if (error_body_.size() < kMaxErrorBody) {
      error_body_.append(data, std::min(len, kMaxErrorBody - error_body_.size()));
    }
  }
  void on_trailers(int32_t, http::HeaderMap&&) override { ended(); }
  void on_end_stream(int32_t) override { ended(); }
  void on_stream_close(int32_t, uint32_t code) override {
    if (code == http2::error_code::no_error) {
      ended();
    } else {
      over("stream reset (" + std::string(http2::error_code_name(code)) + ")");
    }
  }

  void ended() {
    if (status_ == 200) {
      over("the controller ended the stream");
    } else {
      std::string why = printable(error_body_);
      over("request refused: " + std::to_string(status_) + (why.empty() ? "" : ": " + why));
    }
  }

  ControllerStream& owner_;
  std::string address_;
  std::unique_ptr<net::TcpConnection> tcp_;
  std::unique_ptr<http2::Session> session_;
  int status_ = 0;
  std::string error_body_;
  std::string line_;
  bool skipping_ = false;  // inside a line longer than max_bytes
  bool in_session_ = false;
  bool over_ = false;
};

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
  attempt_ = std::make_unique<Attempt>(*this);
  if (Status s = attempt_->dial(address); !s.ok()) on_attempt_over(s.error().message);
}

void ControllerStream::on_streaming() {
  connected_ = true;
  connected_gauge_.set(1);
  connects_ok_.inc();
  log::info("route-table stream open", {{"controller", options_.controller.to_string()},
                                        {"namespace", options_.ns}});
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

void ControllerStream::on_attempt_over(const std::string& why) {
  if (attempt_) loop_.delete_later(std::move(attempt_));
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
