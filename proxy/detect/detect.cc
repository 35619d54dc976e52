#include "proxy/detect/detect.h"

#include <algorithm>
#include <cerrno>
#include <utility>

namespace trellis::proxy::detect {
namespace {

constexpr std::string_view kPreface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);

// The request methods our HTTP/1 decoder (llhttp 8.1) accepts. PRI is left
// out: it only ever starts the HTTP/2 preface.
constexpr std::string_view kMethods[] = {
    "GET",       "HEAD",      "POST",     "PUT",        "DELETE",     "CONNECT",  "OPTIONS",
    "TRACE",     "PATCH",     "COPY",     "LOCK",       "MKCOL",      "MOVE",     "PROPFIND",
    "PROPPATCH", "SEARCH",    "UNLOCK",   "BIND",       "REBIND",     "UNBIND",   "ACL",
    "REPORT",    "MKACTIVITY", "CHECKOUT", "MERGE",     "M-SEARCH",   "NOTIFY",   "SUBSCRIBE",
    "UNSUBSCRIBE", "PURGE",   "MKCALENDAR", "LINK",     "UNLINK",     "SOURCE",
};

constexpr char kTlsHandshake = 0x16;
constexpr char kTlsMajorVersion = 0x03;

// Whether `b` is a prefix of `whole` (true) or diverges from it (false).
bool prefix_of(std::string_view b, std::string_view whole) {
  return b.size() <= whole.size() && whole.compare(0, b.size(), b) == 0;
}

// Stands in as the connection's handler between detection and its next
// owner: reading is paused by then, so nothing of substance can arrive.
class InertHandler final : public net::TcpConnection::Handler {
 public:
  void on_data(const char*, size_t) override {}
  void on_eof() override {}
  void on_error(const Error&) override {}
};

InertHandler& inert_handler() {
  static InertHandler handler;  // stateless: shared by every worker thread
  return handler;
}

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(),
                    [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

}  // namespace

std::string_view protocol_name(Protocol protocol) {
  switch (protocol) {
    case Protocol::http1: return "http1";
    case Protocol::http2: return "http2";
    case Protocol::tls: return "tls";
    case Protocol::opaque: return "opaque";
  }
  return "opaque";
}

std::string_view decision_name(Decision decision) {
  switch (decision) {
    case Decision::matched: return "matched";
    case Decision::timed_out: return "timed_out";
    case Decision::byte_cap: return "byte_cap";
    case Decision::peer_eof: return "peer_eof";
  }
  return "matched";
}

std::optional<Protocol> classify(std::string_view b) {
  if (b.empty()) return std::nullopt;
  bool undecided = false;

  if (prefix_of(b.substr(0, kPreface.size()), kPreface)) {
    if (b.size() >= kPreface.size()) return Protocol::http2;
    undecided = true;
  }

  if (b[0] == kTlsHandshake) {
    if (b.size() == 1) {
      undecided = true;
    } else if (b[1] == kTlsMajorVersion) {
      return Protocol::tls;
    }
  }

  for (std::string_view method : kMethods) {
    if (b.size() > method.size()) {
      if (b.compare(0, method.size(), method) == 0 && b[method.size()] == ' ') return Protocol::http1;
    } else if (prefix_of(b, method)) {
      undecided = true;  // the method, or a prefix of it, still waiting for its space
    }
  }
  return undecided ? std::nullopt : std::optional<Protocol>(Protocol::opaque);
}

std::optional<Protocol> protocol_for_app_protocol(std::string_view app_protocol) {
  struct Hint {
    std::string_view name;
    Protocol protocol;
  };
  static constexpr Hint kHints[] = {
      {"http", Protocol::http1},   {"kubernetes.io/ws", Protocol::http1},
      {"kubernetes.io/h2c", Protocol::http2}, {"h2c", Protocol::http2},
      {"http2", Protocol::http2},  {"grpc", Protocol::http2},
      {"https", Protocol::tls},    {"tls", Protocol::tls},
      {"kubernetes.io/wss", Protocol::tls},
      {"tcp", Protocol::opaque},   {"mysql", Protocol::opaque},
      {"mongo", Protocol::opaque}, {"redis", Protocol::opaque},
  };
  for (const Hint& hint : kHints) {
    if (iequals(app_protocol, hint.name)) return hint.protocol;
  }
  return std::nullopt;
}

Status validate(const DetectOptions& o) {
  if (o.timeout.count() <= 0) {
    return make_error("detect: timeout must be positive, got " + std::to_string(o.timeout.count()) +
                          " ms",
                      EINVAL);
  }
  if (o.max_bytes == 0) return make_error("detect: max_bytes must be positive", EINVAL);
  return ok_status();
}

Detector::Detector(event::EventLoop& loop, const DetectOptions& options, Callback done)
    : options_(options), done_(std::move(done)), reader_(*this), timer_(loop, [this] { on_timeout(); }) {}

Result<std::unique_ptr<Detector>> Detector::start(std::unique_ptr<net::TcpConnection> connection,
                                                  const DetectOptions& options, Callback done) {
  if (Status s = validate(options); !s.ok()) return s.error();
  if (!done) return make_error("detect: no callback", EINVAL);
  if (!connection) return make_error("detect: no connection", EINVAL);
  std::unique_ptr<Detector> detector(new Detector(connection->loop(), options, std::move(done)));
  detector->connection_ = std::move(connection);
  if (Status s = detector->connection_->start(detector->reader_); !s.ok()) {
    return make_error("detect: " + s.error().message, s.error().code);
  }
  detector->timer_.start(options.timeout);
  return detector;
}

void Detector::on_data(const char* data, size_t length) {
  bytes_.append(data, length);
  if (std::optional<Protocol> protocol = classify(bytes_)) {
    decide(*protocol, Decision::matched);
  } else if (bytes_.size() >= options_.max_bytes) {
    decide(Protocol::opaque, Decision::byte_cap);
  }
}

void Detector::on_timeout() { decide(Protocol::opaque, Decision::timed_out); }

void Detector::decide(Protocol protocol, Decision decision) {
  timer_.stop();
  connection_->pause_reading();
  connection_->set_handler(inert_handler());
  Detection detection;
  detection.protocol = protocol;
  detection.decision = decision;
  detection.connection = std::move(connection_);
  detection.bytes = std::move(bytes_);
  detection.eof = decision == Decision::peer_eof;
  report(std::move(detection));
}

void Detector::on_error(const Error& error) {
  timer_.stop();
  connection_.reset();  // already closed by the failure
  report(make_error("protocol detection: " + error.message, error.code));
}

void Detector::report(Result<Detection> result) {
  // Last action: the owner may destroy the detector inside the callback.
  Callback done = std::move(done_);
  done(std::move(result));
}

}  // namespace trellis::proxy::detect
