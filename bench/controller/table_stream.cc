#include "bench/controller/table_stream.h"

#include <algorithm>

#include "common/http2/session.h"
#include "common/net/tcp_connection.h"

namespace trellis::bench::controller {
namespace {

// The sidecar's windows (proxy/app/controller_stream.cc): a whole table in flight.
constexpr uint32_t kReceiveWindow = 8u << 20;
constexpr std::chrono::milliseconds kConnectTimeout{2000};
constexpr size_t kMaxErrorBody = 256;

}  // namespace

// One connection and its one request; reports to the stream once when it is
// over, and is then dropped on a later loop turn (it may be inside a callback).
class TableStream::Attempt final : private net::TcpConnection::Handler,
                                   private http2::SessionHandler {
 public:
  explicit Attempt(TableStream& owner) : owner_(owner) {}

  Status dial() {
    net::ConnectionOptions options;
    options.idle_timeout = std::chrono::milliseconds(0);
    auto tcp = net::TcpConnection::connect(owner_.loop_, owner_.controller_, kConnectTimeout,
                                           [this](const Status& s) { connected(s); }, options);
    if (!tcp.ok()) return tcp.error();
    tcp_ = std::move(*tcp);
    return ok_status();
  }

 private:
  void connected(const Status& status) {
    if (!status.ok()) return over(status.error().message);
    http2::SessionConfig config;
    config.role = http2::Role::client;
    config.initial_stream_window = kReceiveWindow;
    config.connection_window = kReceiveWindow;
    auto session = http2::Session::create(config, *this);
    if (!session.ok()) return over(session.error().message);
    session_ = std::move(*session);
    if (Status s = tcp_->start(*this); !s.ok()) return over(s.error().message);
    http::RequestHead head;
    head.method = "GET";
    head.target = "/v1/route-table?namespace=" + owner_.ns_;
    head.authority = owner_.controller_.to_string();
    head.scheme = "http";
    head.version = http::Version::http2;
    head.headers.add("accept", "application/x-ndjson");
    head.headers.add("user-agent", "trellis-bench-controller");
    if (auto id = session_->submit_request(head, false); !id.ok()) return over(id.error().message);
    flush();
  }

  void flush() {
    if (over_ || in_session_ || !session_) return;
    out_.clear();
    in_session_ = true;
    Status produced = session_->produce(out_);
    in_session_ = false;
    if (over_) return;
    if (!out_.empty()) {
      if (Status w = tcp_->write(out_); !w.ok()) return over(w.error().message);
    }
    if (!produced.ok()) return over(produced.error().message);
    if (session_->is_closed()) over("the controller closed the connection");
  }

  void over(const std::string& why) {
    if (over_) return;
    over_ = true;
    owner_.on_attempt_over(why);
  }

  // net::TcpConnection::Handler
  void on_data(const char* data, size_t length) override {
    if (over_) return;
    in_session_ = true;
    Status received = session_->receive(data, length);
    in_session_ = false;
    if (over_) return;
    if (!received.ok()) return over(received.error().message);
    flush();
  }
  void on_eof() override { over("the controller closed the connection"); }
  void on_error(const Error& error) override { over(error.message); }

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
      owner_.on_body(data, len);
    } else if (error_body_.size() < kMaxErrorBody) {
      error_body_.append(data, std::min(len, kMaxErrorBody - error_body_.size()));
    }
  }
  void on_trailers(int32_t, http::HeaderMap&&) override { ended(); }
  void on_end_stream(int32_t) override { ended(); }
  void on_stream_close(int32_t, uint32_t code) override {
    if (code == http2::error_code::no_error) return ended();
    over("stream reset (" + std::string(http2::error_code_name(code)) + ")");
  }
  void ended() {
    if (status_ == 200) return over("the controller ended the stream");
    over("request refused: " + std::to_string(status_) + ": " + error_body_);
  }

  TableStream& owner_;
  std::unique_ptr<net::TcpConnection> tcp_;
  std::unique_ptr<http2::Session> session_;
  std::string out_;
  std::string error_body_;
  int status_ = 0;
  bool in_session_ = false;
  bool over_ = false;
};

TableStream::TableStream(event::EventLoop& loop, net::Address controller, std::string ns,
                         int index, Observer& observer, std::chrono::milliseconds retry_delay)
    : loop_(loop),
      controller_(controller),
      ns_(std::move(ns)),
      index_(index),
      observer_(observer),
      retry_delay_(retry_delay),
      retry_timer_(loop, [this] { dial(); }) {}

TableStream::~TableStream() = default;

void TableStream::start() { dial(); }

void TableStream::dial() {
  attempt_ = std::make_unique<Attempt>(*this);
  if (Status s = attempt_->dial(); !s.ok()) on_attempt_over(s.error().message);
}

void TableStream::on_streaming() { streaming_ = true; }

void TableStream::on_body(const char* data, size_t length) {
  scanner_.feed(std::string_view(data, length), [this](const ScannedLine& line) {
    ++tables_;
    table_bytes_ += line.bytes;
    if (!line.version.empty()) version_ = line.version;
    observer_.on_table(*this, line, Clock::now());
  });
}

void TableStream::on_attempt_over(const std::string& why) {
  if (attempt_) loop_.delete_later(std::move(attempt_));
  last_error_ = why;
  if (streaming_) {
    streaming_ = false;
    observer_.on_stream_broken(*this, why);
  }
  // A partial table from the broken connection must not be glued to the next.
  scanner_.discard_partial();
  retry_timer_.start(retry_delay_);
}

}  // namespace trellis::bench::controller
