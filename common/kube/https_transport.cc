#include "common/kube/https_transport.h"

#include <netdb.h>

#include <algorithm>
#include <optional>

#include "common/event/timer.h"
#include "common/http/message.h"
#include "common/http1/decoder.h"
#include "common/http1/encoder.h"
#include "common/kube/errors.h"
#include "common/net/address.h"
#include "common/net/tcp_connection.h"
#include "common/tls/context.h"
#include "common/tls/session.h"

namespace trellis::kube {

namespace {

constexpr size_t kMaxErrorBody = 64 * 1024;

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

bool is_idempotent(std::string_view method) {
  return method == "GET" || method == "PUT" || method == "DELETE" || method == "HEAD";
}

// Errors of the transport never carry an HTTP status (see errors.h).
Error transport_error(std::string message) { return make_error(std::move(message), 0); }

}  // namespace

namespace detail {

// What every connection of one transport shares; kept alive by streams that
// outlive the transport.
struct Endpoint {
  Endpoint(event::EventLoop& l, const TransportOptions& o) : loop(l), options(o) {}

  // The Authorization header's value, "" without a token.
  Result<std::string> authorization() {
    if (token_file) {
      auto token = token_file->current();
      if (!token) return transport_error(std::move(token).error().message);
      return "Bearer " + *token;
    }
    if (!token.empty()) return "Bearer " + token;
    return std::string();
  }

  event::EventLoop& loop;
  TransportOptions options;
  std::shared_ptr<const tls::Context> tls;
  std::string host;
  uint16_t port = 443;
  std::string base_path;
  std::string authority;    // Host header
  std::string sni;          // empty for an IP address
  std::string verify_name;  // DNS name or IP the certificate must match
  std::string token;
  std::unique_ptr<TokenFile> token_file;
};

// One HTTP/1.1-over-TLS connection to the API server: resolve, connect,
// handshake, then requests one at a time. Events reach the Listener after the
// TLS session and the HTTP decoder have returned, so the Listener may destroy
// the Connection from any of them.
class Connection : public net::TcpConnection::Handler {
 public:
  class Listener {
   public:
    virtual void on_head(int status) = 0;
    virtual void on_body(std::string_view bytes) = 0;
    virtual void on_complete() = 0;
    // The connection is unusable (also after a complete response); the last call.
    virtual void on_failure(const Error& error) = 0;

   protected:
    ~Listener() = default;
  };

  Connection(std::shared_ptr<Endpoint> endpoint, Listener& listener,
             std::chrono::milliseconds idle_timeout, std::optional<uint64_t> max_body)
      : endpoint_(std::move(endpoint)), listener_(listener), idle_timeout_(idle_timeout) {
    http1::DecoderOptions options;
    options.limits.max_body_bytes = max_body;
    decoder_ = std::make_unique<http1::ResponseDecoder>(response_events_, options);
  }

  ~Connection() override {
    if (resolve_ != nullptr) {
      resolve_->data = nullptr;
      uv_cancel(reinterpret_cast<uv_req_t*>(resolve_));
    }
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start() {
    auto ip = net::Address::from_ip(endpoint_->host, endpoint_->port);
    if (ip.ok()) {
      connect(*ip);
      return;
    }
    auto* req = new uv_getaddrinfo_t{};
    req->data = this;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(endpoint_->loop.uv(), req, &Connection::on_resolved,
                            endpoint_->host.c_str(), nullptr, &hints);
    if (rc != 0) {
      delete req;
      fail_later(transport_error("resolve " + endpoint_->host + ": " + uv_strerror(rc)));
      return;
    }
    resolve_ = req;
  }

  // Queues one request; the connection sends it once TLS is up. Fails only
  // when the request cannot be encoded (or the token cannot be read).
  Status send(const HttpRequest& request) {
    http::RequestHead head;
    head.method = request.method;
    head.target = endpoint_->base_path + request.target;
    head.authority = endpoint_->authority;
    head.scheme = "https";
    head.headers.add("User-Agent", endpoint_->options.user_agent);
    head.headers.add("Accept", "application/json");
    auto authorization = endpoint_->authorization();
    if (!authorization) return std::move(authorization).error();
    if (!authorization->empty()) head.headers.add("Authorization", *authorization);
    if (!request.content_type.empty()) head.headers.add("Content-Type", request.content_type);
    bool has_body = !request.body.empty() || request.method == "POST" ||
                    request.method == "PUT" || request.method == "PATCH";
    std::string wire;
    auto framing = has_body ? http1::Framing::content_length(request.body.size())
                            : http1::Framing::no_body();
    if (auto s = http1::encode_request_head(head, framing, wire); !s.ok()) {
      return transport_error("cannot encode the request: " + s.error().message);
    }
    wire += request.body;
    decoder_->expect_response(request.method);
    received_ = false;
    if (!session_) {
      pending_ += wire;
      return ok_status();
    }
    if (auto s = session_->write(wire); !s.ok()) return transport_error(s.error().message);
    flush();
    return ok_status();
  }

  // Idle and able to carry another request.
  bool reusable() const {
    return !failed_ && tcp_ && tcp_->state() == net::TcpConnection::State::open && session_ &&
           !session_->failed() && !session_->peer_closed() &&
           decoder_->state() == http1::DecoderState::active && decoder_->outstanding() == 0 &&
           keep_alive_;
  }

  // Some bytes of the answer to the last request arrived.
  bool received() const { return received_; }

  // Reports `error` to the listener from the loop, never from inside the caller.
  void fail_later(Error error) {
    std::weak_ptr<bool> alive = alive_;
    endpoint_->loop.defer([this, alive, error = std::move(error)]() mutable {
      if (!alive.expired()) fail(std::move(error));
    });
  }

 private:
  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* result) {
    auto* self = static_cast<Connection*>(req->data);
    std::optional<net::Address> address;
    if (status == 0 && result != nullptr) {
      auto a = net::Address::from_sockaddr(result->ai_addr, result->ai_addrlen);
      if (a.ok()) address = *a;
    }
    uv_freeaddrinfo(result);
    delete req;
    if (self == nullptr) return;
    self->resolve_ = nullptr;
    if (!address) {
      std::string why = status != 0 ? uv_strerror(status) : "no usable address";
      self->fail(transport_error("resolve " + self->endpoint_->host + ": " + why));
      return;
    }
    auto with_port = net::Address::from_ip(address->ip(), self->endpoint_->port);
    if (!with_port.ok()) {
      self->fail(transport_error("resolve " + self->endpoint_->host + ": " +
                                 with_port.error().message));
      return;
    }
    self->connect(*with_port);
  }

  void connect(const net::Address& address) {
    net::ConnectionOptions options;
    options.idle_timeout = idle_timeout_;
    auto tcp = net::TcpConnection::connect(
        endpoint_->loop, address, endpoint_->options.connect_timeout,
        [this](const Status& status) { on_connected(status); }, options);
    if (!tcp.ok()) {
      fail_later(transport_error(tcp.error().message));
      return;
    }
    tcp_ = std::move(*tcp);
  }

  void on_connected(const Status& status) {
    if (!status.ok()) {
      fail(transport_error(status.error().message));
      return;
    }
    tls::SessionOptions options;
    options.server_name = endpoint_->sni;
    options.verify_name = endpoint_->verify_name;
    options.on_plaintext = [this](const char* data, size_t len) { plaintext_.append(data, len); };
    auto session = tls::Session::create(endpoint_->tls, std::move(options));
    if (!session.ok()) {
      fail(transport_error(session.error().message));
      return;
    }
    session_ = std::move(*session);
    if (!pending_.empty()) {
      Status s = session_->write(pending_);
      pending_.clear();
      if (!s.ok()) {
        fail(transport_error(s.error().message));
        return;
      }
    }
    if (auto s = tcp_->start(*this); !s.ok()) {
      fail(transport_error(s.error().message));
      return;
    }
    flush();
  }

  // Sends what the TLS session has to send.
  void flush() {
    if (!session_ || !session_->has_output() || failed_) return;
    session_->take_output(ciphertext_);
    if (auto s = tcp_->write(ciphertext_); !s.ok()) fail(transport_error(s.error().message));
  }

  void on_data(const char* data, size_t length) override {
    event::CallbackScope scope(destruction_);
    Status s = session_->feed_input(data, length);
    flush();
    if (scope.destroyed() || failed_) return;
    if (!s.ok()) {
      fail(transport_error(s.error().message));
      return;
    }
    decode(scope);
  }

  void on_eof() override {
    event::CallbackScope scope(destruction_);
    (void)session_->feed_eof();  // the HTTP framing says whether the answer was complete
    decode(scope);
    if (scope.destroyed() || failed_) return;
    decoder_->finish();
    dispatch(scope);
    if (scope.destroyed() || failed_) return;
    fail(transport_error("connection closed by the server"));
  }

  void on_error(const Error& error) override { fail(transport_error(error.message)); }

  void on_idle_timeout() override {
    fail(transport_error("no data from the server for " + ms_text(idle_timeout_)));
  }

  void decode(event::CallbackScope& scope) {
    if (plaintext_.empty()) return;
    received_ = true;
    size_t used = decoder_->feed(plaintext_.data(), plaintext_.size());
    plaintext_.erase(0, used);
    // Bytes the decoder did not take follow a response that ended the
    // connection; nothing can use them.
    if (decoder_->state() != http1::DecoderState::active) plaintext_.clear();
    dispatch(scope);
  }

  // Delivers what the decoder reported, in wire order.
  void dispatch(event::CallbackScope& scope) {
    if (head_pending_) {
      head_pending_ = false;
      listener_.on_head(status_);
      if (scope.destroyed()) return;
    }
    if (!body_.empty()) {
      delivering_.swap(body_);
      listener_.on_body(delivering_);
      if (scope.destroyed()) return;
      delivering_.clear();
    }
    if (complete_) {
      complete_ = false;
      listener_.on_complete();
      if (scope.destroyed()) return;
    }
    if (decode_error_) {
      Error error = std::move(*decode_error_);
      decode_error_.reset();
      fail(transport_error(std::move(error.message)));
    }
  }

  // The decoder's events, recorded only: dispatch() acts once the decoder returned.
  struct ResponseEvents : http1::ResponseHandler {
    explicit ResponseEvents(Connection& c) : connection(c) {}
    void on_interim(http::ResponseHead&&) override {}
    void on_head(http::ResponseHead&& head, const http1::MessageInfo& info) override {
      connection.status_ = head.status;
      connection.keep_alive_ = info.keep_alive;
      connection.head_pending_ = true;
    }
    void on_body(const char* data, size_t len) override { connection.body_.append(data, len); }
    void on_trailers(http::HeaderMap&&) override {}
    void on_message_complete() override { connection.complete_ = true; }
    void on_error(const Error& error) override {
      if (!connection.decode_error_) connection.decode_error_ = error;
    }
    Connection& connection;
  };

  void fail(Error error) {
    if (failed_) return;
    failed_ = true;
    if (tcp_) tcp_->abort();
    listener_.on_failure(error);
  }

  std::shared_ptr<Endpoint> endpoint_;
  Listener& listener_;
  std::chrono::milliseconds idle_timeout_;
  uv_getaddrinfo_t* resolve_ = nullptr;  // freed by its callback
  std::unique_ptr<net::TcpConnection> tcp_;
  std::unique_ptr<tls::Session> session_;
  ResponseEvents response_events_{*this};
  std::unique_ptr<http1::ResponseDecoder> decoder_;
  std::string pending_;     // request bytes written before the session existed
  std::string ciphertext_;  // reused for every socket write
  std::string plaintext_;   // decrypted, not yet decoded
  std::string body_;        // decoded, not yet dispatched
  std::string delivering_;
  int status_ = 0;
  bool keep_alive_ = true;
  bool head_pending_ = false;
  bool complete_ = false;
  bool received_ = false;
  bool failed_ = false;
  std::optional<Error> decode_error_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  event::DestructionFlag destruction_;
};

}  // namespace detail

using detail::Connection;

// A request waiting for a connection or in flight on one.
struct HttpsTransport::Exchange {
  RequestId id = 0;
  HttpRequest request;
  ResponseCallback done;
  std::unique_ptr<event::Timer> timer;
  Slot* slot = nullptr;
  int status = 0;
  std::string body;
  bool retried = false;
};

// A pooled connection and the exchange it carries (none when idle).
struct HttpsTransport::Slot : Connection::Listener {
  explicit Slot(HttpsTransport& t) : transport(t) {}

  void on_head(int status) override {
    if (!retired && exchange != nullptr) exchange->status = status;
  }
  void on_body(std::string_view bytes) override {
    if (!retired && exchange != nullptr) exchange->body.append(bytes);
  }
  void on_complete() override {
    if (!retired) transport.on_slot_response(*this);
  }
  void on_failure(const Error& error) override {
    if (!retired) transport.on_slot_failure(*this, error);
  }

  HttpsTransport& transport;
  std::unique_ptr<Connection> connection;
  Exchange* exchange = nullptr;
  bool used = false;  // carried an exchange before the current one
  // Removed from the pool, waiting to be freed: hears nothing more.
  bool retired = false;
};

Status validate(const TransportOptions& o) {
  if (o.max_connections == 0) return make_error("max_connections must be positive");
  if (o.connect_timeout.count() <= 0) return make_error("connect_timeout must be positive");
  if (o.request_timeout.count() <= 0) return make_error("request_timeout must be positive");
  if (o.stream_idle_timeout.count() <= 0) {
    return make_error("stream_idle_timeout must be positive");
  }
  if (o.idle_timeout.count() <= 0) return make_error("idle_timeout must be positive");
  if (o.max_response_bytes == 0) return make_error("max_response_bytes must be positive");
  return ok_status();
}

Result<std::unique_ptr<HttpsTransport>> HttpsTransport::create(event::EventLoop& loop,
                                                               const ClientConfig& config,
                                                               const TransportOptions& options) {
  if (auto s = validate(options); !s.ok()) return std::move(s).error();
  if (config.host.empty()) return make_error("no API server host");
  tls::ContextConfig tls_config;
  tls_config.role = tls::Role::client;
  tls_config.trust_bundle_pem = config.ca_pem;
  tls_config.certificate_chain_pem = config.client_certificate_pem;
  tls_config.private_key_pem = config.client_key_pem;
  tls_config.verify_peer = true;
  tls_config.alpn_protocols = {"http/1.1"};
  tls_config.alpn_mismatch = tls::AlpnMismatch::continue_without;
  // kube-apiserver speaks TLS 1.2 and 1.3.
  tls_config.min_version = tls::TlsVersion::tls1_2;
  tls_config.max_version = tls::TlsVersion::tls1_3;
  auto context = tls::Context::create(std::move(tls_config));
  if (!context.ok()) return make_error("tls: " + context.error().message);

  auto endpoint = std::make_shared<detail::Endpoint>(loop, options);
  endpoint->tls = std::move(*context);
  endpoint->host = config.host;
  endpoint->port = config.port;
  endpoint->base_path = config.base_path;
  bool ipv6 = config.host.find(':') != std::string::npos;
  endpoint->authority =
      (ipv6 ? "[" + config.host + "]" : config.host) + ":" + std::to_string(config.port);
  endpoint->verify_name = config.tls_server_name.empty() ? config.host : config.tls_server_name;
  bool name_is_ip = net::Address::from_ip(endpoint->verify_name, 0).ok();
  if (!name_is_ip) endpoint->sni = endpoint->verify_name;
  endpoint->token = config.token;
  if (!config.token_file.empty()) {
    endpoint->token_file = std::make_unique<TokenFile>(config.token_file);
  }
  return std::unique_ptr<HttpsTransport>(new HttpsTransport(loop, std::move(endpoint)));
}

HttpsTransport::HttpsTransport(event::EventLoop& loop, std::shared_ptr<detail::Endpoint> endpoint)
    : loop_(loop), endpoint_(std::move(endpoint)) {}

HttpsTransport::~HttpsTransport() = default;

RequestId HttpsTransport::send(HttpRequest request, ResponseCallback done) {
  RequestId id = next_id_++;
  auto exchange = std::make_unique<Exchange>();
  exchange->id = id;
  exchange->request = std::move(request);
  exchange->done = std::move(done);
  std::chrono::milliseconds timeout = exchange->request.timeout.count() > 0
                                          ? exchange->request.timeout
                                          : endpoint_->options.request_timeout;
  exchange->request.timeout = timeout;
  exchange->timer = std::make_unique<event::Timer>(loop_, [this, id] { on_timeout(id); });
  exchange->timer->start(timeout);
  exchanges_.emplace(id, std::move(exchange));
  queue_.push_back(id);
  schedule_pump();
  return id;
}

void HttpsTransport::schedule_pump() {
  if (pump_scheduled_) return;
  pump_scheduled_ = true;
  std::weak_ptr<bool> alive = alive_;
  loop_.defer([this, alive] {
    if (alive.expired()) return;
    pump_scheduled_ = false;
    pump();
  });
}

void HttpsTransport::pump() {
  while (!queue_.empty()) {
    auto it = exchanges_.find(queue_.front());
    if (it == exchanges_.end()) {
      queue_.pop_front();
      continue;
    }
    Slot* slot = nullptr;
    for (auto& s : slots_) {
      if (s->exchange == nullptr && s->connection->reusable()) {
        slot = s.get();
        break;
      }
    }
    if (slot == nullptr) {
      if (slots_.size() >= endpoint_->options.max_connections) {
        // Connections that died while idle make room.
        auto dead = std::find_if(slots_.begin(), slots_.end(), [](const auto& s) {
          return s->exchange == nullptr && !s->connection->reusable();
        });
        if (dead == slots_.end()) return;
        slots_.erase(dead);
      }
      auto fresh = std::make_unique<Slot>(*this);
      fresh->connection = std::make_unique<Connection>(endpoint_, *fresh,
                                                       endpoint_->options.idle_timeout,
                                                       endpoint_->options.max_response_bytes);
      slot = fresh.get();
      slots_.push_back(std::move(fresh));
      slot->connection->start();
    }
    queue_.pop_front();
    event::CallbackScope scope(destruction_);
    assign(*slot, *it->second);
    if (scope.destroyed()) return;
  }
}

void HttpsTransport::assign(Slot& slot, Exchange& exchange) {
  exchange.slot = &slot;
  exchange.status = 0;
  exchange.body.clear();
  slot.exchange = &exchange;
  Status sent = slot.connection->send(exchange.request);
  if (!sent.ok()) {
    // Nothing reached the wire that a later request could trip over, but the
    // decoder now expects an answer: retire the connection.
    remove_slot(&slot);
    finish(exchange.id, std::move(sent).error());
  }
}

void HttpsTransport::remove_slot(Slot* slot) {
  if (slot->exchange != nullptr) slot->exchange->slot = nullptr;
  slot->exchange = nullptr;
  slot->retired = true;
  auto it = std::find_if(slots_.begin(), slots_.end(),
                         [slot](const auto& s) { return s.get() == slot; });
  if (it == slots_.end()) return;
  // The slot may be on the stack (inside its connection's callback): free it
  // on the next loop turn.
  loop_.delete_later(std::move(*it));
  slots_.erase(it);
}

bool HttpsTransport::finish(RequestId id, Result<HttpResponse> result) {
  auto it = exchanges_.find(id);
  if (it == exchanges_.end()) return true;
  std::unique_ptr<Exchange> exchange = std::move(it->second);
  exchanges_.erase(it);
  if (exchange->slot != nullptr) exchange->slot->exchange = nullptr;
  exchange->timer.reset();
  event::CallbackScope scope(destruction_);
  exchange->done(std::move(result));
  return !scope.destroyed();
}

void HttpsTransport::on_slot_response(Slot& slot) {
  Exchange* exchange = slot.exchange;
  slot.exchange = nullptr;
  slot.used = true;
  if (!slot.connection->reusable()) remove_slot(&slot);
  if (exchange == nullptr) return;
  HttpResponse response{exchange->status, std::move(exchange->body)};
  if (!finish(exchange->id, std::move(response))) return;
  schedule_pump();
}

void HttpsTransport::on_slot_failure(Slot& slot, const Error& error) {
  Exchange* exchange = slot.exchange;
  bool retry = exchange != nullptr && slot.used && !slot.connection->received() &&
               !exchange->retried && is_idempotent(exchange->request.method);
  remove_slot(&slot);
  if (exchange == nullptr) return;
  exchange->slot = nullptr;
  if (retry) {
    exchange->retried = true;
    queue_.push_front(exchange->id);
    schedule_pump();
    return;
  }
  if (!finish(exchange->id, transport_error(error.message))) return;
  schedule_pump();
}

void HttpsTransport::on_timeout(RequestId id) {
  auto it = exchanges_.find(id);
  if (it == exchanges_.end()) return;
  Exchange& exchange = *it->second;
  // The connection is mid-exchange: its answer may still come, so drop it.
  if (exchange.slot != nullptr) remove_slot(exchange.slot);
  std::string message = "timed out after " + ms_text(exchange.request.timeout);
  if (!finish(id, transport_error(std::move(message)))) return;
  schedule_pump();
}

void HttpsTransport::cancel(RequestId id) {
  auto it = exchanges_.find(id);
  if (it == exchanges_.end()) return;
  if (it->second->slot != nullptr) remove_slot(it->second->slot);
  exchanges_.erase(it);
}

namespace {

// A streamed response on a connection of its own.
class HttpsStream : public Stream, public Connection::Listener {
 public:
  HttpsStream(std::shared_ptr<detail::Endpoint> endpoint, StreamHandler& handler,
              std::chrono::milliseconds idle_timeout)
      : handler_(handler),
        connection_(std::make_unique<Connection>(std::move(endpoint), *this, idle_timeout,
                                                 std::nullopt)) {}

  void start(const HttpRequest& request) {
    Status sent = connection_->send(request);
    if (!sent.ok()) {
      connection_->fail_later(std::move(sent).error());
      return;
    }
    connection_->start();
  }

 private:
  void on_head(int status) override {
    status_ = status;
    if (status == 200) {
      open_ = true;
      handler_.on_open();
    }
  }

  void on_body(std::string_view bytes) override {
    if (ended_) return;
    if (open_) {
      handler_.on_data(bytes);
    } else if (error_body_.size() < kMaxErrorBody) {
      error_body_.append(bytes.substr(0, kMaxErrorBody - error_body_.size()));
    }
  }

  void on_complete() override {
    if (ended_) return;
    ended_ = true;
    handler_.on_end(open_ ? ok_status() : Status(api_error(status_, error_body_)));
  }

  void on_failure(const Error& error) override {
    if (ended_) return;
    ended_ = true;
    handler_.on_end(error);
  }

  StreamHandler& handler_;
  std::unique_ptr<Connection> connection_;
  int status_ = 0;
  bool open_ = false;
  bool ended_ = false;
  std::string error_body_;
};

}  // namespace

std::unique_ptr<Stream> HttpsTransport::open_stream(HttpRequest request, StreamHandler& handler) {
  std::chrono::milliseconds idle = request.timeout.count() > 0
                                       ? request.timeout
                                       : endpoint_->options.stream_idle_timeout;
  auto stream = std::make_unique<HttpsStream>(endpoint_, handler, idle);
  stream->start(request);
  return stream;
}

}  // namespace trellis::kube
