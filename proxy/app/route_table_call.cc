#include "proxy/app/route_table_call.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "common/http2/session.h"
#include "common/net/tcp_connection.h"

namespace trellis::proxy::app {
namespace {

constexpr char kPath[] = "/v1/route-table";
// Tables can be megabytes; callers take every byte at once (into a line
// buffer), so large windows cost no memory and save round trips.
constexpr uint32_t kReceiveWindow = 8u << 20;
// How much of a refusal's body goes into the reason.
constexpr size_t kMaxErrorBody = 512;

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, kMaxErrorBody)) out += (c >= 0x20 && c < 0x7f) ? c : ' ';
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

class RouteTableCall::Connection final : private net::TcpConnection::Handler,
                                         private http2::SessionHandler {
 public:
  Connection(RouteTableCallOptions options, RouteTableCall::Handler& handler)
      : options_(std::move(options)), handler_(handler) {}

  Status dial(event::EventLoop& loop, const net::Address& controller) {
    net::ConnectionOptions connection;
    connection.idle_timeout = options_.idle_timeout;
    ASSIGN_OR_RETURN(tcp_, net::TcpConnection::connect(
                               loop, controller, options_.connect_timeout,
                               [this](const Status& s) { connected(s); }, connection));
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
    head.target = std::string(kPath) + "?namespace=" + options_.ns;
    head.authority = options_.authority;
    head.scheme = "http";
    head.version = http::Version::http2;
    head.headers.add("accept", "application/x-ndjson");
    head.headers.add("user-agent", options_.user_agent);
    auto id = session_->submit_request(head, false);
    if (!id.ok()) {
      over(id.error().message);
      return;
    }
    flush();
  }

  // Hands the session's pending frames to the connection.
  void flush() {
    if (over_ || in_session_ || !session_) return;
    out_.clear();
    in_session_ = true;
    Status produced = session_->produce(out_);
    in_session_ = false;
    if (over_) return;
    if (!out_.empty()) {
      if (Status w = tcp_->write(out_); !w.ok()) {
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

  // Reports the end once; the owner drops the call.
  void over(const std::string& why) {
    if (over_) return;
    over_ = true;
    handler_.on_over(why);
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
    over("nothing received for " + ms_text(options_.idle_timeout));
  }

  // http2::SessionHandler
  void on_response_head(int32_t, http::ResponseHead&& head, bool end_stream) override {
    if (over_ || head.status < 200) return;
    status_ = head.status;
    if (status_ == 200) {
      handler_.on_streaming();
    } else if (end_stream) {
      over("request refused: " + std::to_string(status_));
    }
  }
  void on_data(int32_t id, const char* data, size_t len) override {
    (void)session_->consume(id, len);
    if (over_) return;
    if (status_ == 200) {
      handler_.on_body(data, len);
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

  // The response ended (end of stream, trailers or a clean close).
  void ended() {
    if (status_ == 200) {
      over("the controller ended the stream");
    } else {
      std::string why = printable(error_body_);
      over("request refused: " + std::to_string(status_) + (why.empty() ? "" : ": " + why));
    }
  }

  RouteTableCallOptions options_;
  RouteTableCall::Handler& handler_;
  std::unique_ptr<net::TcpConnection> tcp_;
  std::unique_ptr<http2::Session> session_;
  std::string out_;  // frames on their way to tcp_, reused
  int status_ = 0;
  std::string error_body_;
  bool in_session_ = false;
  bool over_ = false;
};

RouteTableCall::RouteTableCall(std::unique_ptr<Connection> connection)
    : connection_(std::move(connection)) {}

RouteTableCall::~RouteTableCall() = default;

Result<std::unique_ptr<RouteTableCall>> RouteTableCall::start(event::EventLoop& loop,
                                                              const net::Address& controller,
                                                              RouteTableCallOptions options,
                                                              Handler& handler) {
  auto connection = std::make_unique<Connection>(std::move(options), handler);
  RETURN_IF_ERROR(connection->dial(loop, controller));
  return std::unique_ptr<RouteTableCall>(new RouteTableCall(std::move(connection)));
}

}  // namespace trellis::proxy::app
