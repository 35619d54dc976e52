#include "tests/support/echo/client.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "common/http1/decoder.h"
#include "common/http1/encoder.h"
#include "common/http2/session.h"
#include "common/net/tcp_connection.h"
#include "tests/support/echo/wire.h"

namespace trellis::support::echo {

namespace {

constexpr size_t kMaxErrorsShown = 20;
constexpr std::string_view kUserAgent = "trellis-echo";
constexpr std::string_view kEchoPath = "/proto.EchoTestService/Echo";

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// "[i body] line" for every non-empty line, as the Istio client prints a body.
void append_body(std::string& out, size_t index, std::string_view body) {
  std::string prefix = "[" + std::to_string(index) + " body] ";
  while (!body.empty()) {
    size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    if (!line.empty()) out.append(prefix).append(line).append("\n");
    if (nl == std::string_view::npos) break;
    body.remove_prefix(nl + 1);
  }
}

// The value of the first "key=value" line of an echo body; "" when absent.
std::string body_field(std::string_view body, std::string_view key) {
  std::string needle = std::string(key) + "=";
  size_t at = 0;
  while (at < body.size()) {
    size_t nl = body.find('\n', at);
    std::string_view line = body.substr(at, nl == std::string_view::npos ? std::string_view::npos : nl - at);
    if (line.compare(0, needle.size(), needle) == 0) return std::string(line.substr(needle.size()));
    if (nl == std::string_view::npos) break;
    at = nl + 1;
  }
  return "";
}

// One "[i] ResponseHeader=K:V" per value, sorted by key, values in arrival
// order. HTTP keys are Go-canonical (Go's http.Header); gRPC metadata keys
// stay lowercase. Transfer-Encoding is framing, not a header, in Go.
void append_response_headers(std::string& out, size_t index, const http::HeaderMap& headers, bool canonical) {
  std::vector<http::Header> sorted;
  for (const http::Header& h : headers) {
    if (http::iequals(h.name, "transfer-encoding")) continue;
    sorted.push_back({canonical ? canonical_header_key(h.name) : lowercase(h.name), h.value});
  }
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const http::Header& a, const http::Header& b) { return a.name < b.name; });
  for (const http::Header& h : sorted) {
    out.append("[").append(std::to_string(index)).append("] ResponseHeader=");
    out.append(h.name).append(":").append(h.value).append("\n");
  }
}

std::string duration_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

}  // namespace

Result<net::Address> resolve(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0) return make_error("resolve '" + host + "': " + gai_strerror(rc));
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> owned(found, freeaddrinfo);
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    auto address = net::Address::from_sockaddr(a->ai_addr, a->ai_addrlen);
    if (address.ok()) return net::Address::from_ip(address->ip(), port);
  }
  return make_error("resolve '" + host + "': no IPv4 or IPv6 address");
}

// One request on its own connection. Reports its outcome exactly once,
// through succeed() or fail(); the Client then destroys it on the next turn.
class Client::Exchange {
 public:
  Exchange(Client& client, size_t index) : client_(client), index_(index) {}
  virtual ~Exchange() = default;
  virtual void start() = 0;

 protected:
  event::EventLoop& loop() { return client_.loop_; }
  const net::Address& dial() const { return client_.dial_; }
  std::chrono::milliseconds remaining() const { return client_.remaining(); }
  const ClientOptions& options() const { return client_.options_; }
  const Url& url() const { return client_.url_; }
  const std::string& authority() const { return client_.authority_; }
  const std::vector<std::pair<std::string, std::string>>& headers() const { return client_.headers_; }
  size_t index() const { return index_; }
  std::string block_head() const { return client_.block_head(index_); }
  void succeed(std::string output, std::string hostname, std::string code) {
    client_.succeed(index_, std::move(output), std::move(hostname), std::move(code));
  }
  void fail(std::string error) { client_.fail(index_, std::move(error)); }

 private:
  Client& client_;
  size_t index_;
};

namespace {

// HTTP/1.1 on a fresh connection, closed after the response.
class Http1Exchange final : public Client::Exchange, private net::TcpConnection::Handler {
 public:
  using Exchange::Exchange;

  void start() override {
    auto tcp = net::TcpConnection::connect(loop(), dial(), remaining(),
                                           [this](const Status& s) { on_connect(s); });
    if (!tcp.ok()) return fail(tcp.error().message);
    tcp_ = std::move(tcp).value();
  }

 private:
  struct Events final : http1::ResponseHandler {
    void on_interim(http::ResponseHead&&) override {}
    void on_head(http::ResponseHead&& h, const http1::MessageInfo&) override { head = std::move(h); }
    void on_body(const char* data, size_t length) override { body.append(data, length); }
    void on_trailers(http::HeaderMap&&) override {}
    void on_message_complete() override { complete = true; }
    void on_error(const Error& e) override { error = e; }
    http::ResponseHead head;
    std::string body;
    bool complete = false;
    std::optional<Error> error;
  };

  void on_connect(const Status& status) {
    if (!status.ok()) return end_with_error(status.error().message);
    if (Status s = tcp_->start(*this); !s.ok()) return end_with_error(s.error().message);
    http::RequestHead head;
    head.method = options().method;
    head.target = url().target;
    head.authority = authority();
    for (const auto& [k, v] : headers()) head.headers.add(k, v);
    if (!head.headers.contains("user-agent")) head.headers.add("User-Agent", kUserAgent);
    // Istio's client disables keep-alive: one request per connection.
    if (!head.headers.contains("connection")) head.headers.add("Connection", "close");
    const std::string& body = options().body;
    std::string out;
    Status s = http1::encode_request_head(
        head, body.empty() ? http1::Framing::no_body() : http1::Framing::content_length(body.size()), out);
    if (!s.ok()) return end_with_error("invalid request: " + s.error().message);
    out += body;
    decoder_.expect_response(head.method);
    if (Status w = tcp_->write(out); !w.ok()) return end_with_error(w.error().message);
  }

  void on_data(const char* data, size_t length) override {
    decoder_.feed(data, length);
    (void)check();
  }
  void on_eof() override {
    decoder_.finish();
    if (!check()) end_with_error("connection closed before the response was complete");
  }
  void on_error(const Error& error) override { end_with_error(error.message); }

  // Ends the exchange once the decoder has a verdict.
  bool check() {
    if (events_.error) {
      end_with_error("invalid response: " + events_.error->message);
      return true;
    }
    if (!events_.complete) return false;
    tcp_.reset();  // allowed inside its own callback; nothing more arrives
    std::string out = block_head();
    std::string i = std::to_string(index());
    out.append("[").append(i).append("] StatusCode=").append(std::to_string(events_.head.status)).append("\n");
    append_response_headers(out, index(), events_.head.headers, true);
    append_body(out, index(), events_.body);
    succeed(std::move(out), body_field(events_.body, "Hostname"), std::to_string(events_.head.status));
    return true;
  }

  void end_with_error(std::string error) {
    tcp_.reset();
    fail(std::move(error));
  }

  Events events_;
  http1::ResponseDecoder decoder_{events_};
  std::unique_ptr<net::TcpConnection> tcp_;
};

// TCP: sends --body and half-closes, or, with no body, waits for the
// server to speak first; then prints everything read until the server's FIN.
class TcpExchange final : public Client::Exchange, private net::TcpConnection::Handler {
 public:
  using Exchange::Exchange;

  void start() override {
    auto tcp = net::TcpConnection::connect(loop(), dial(), remaining(),
                                           [this](const Status& s) { on_connect(s); });
    if (!tcp.ok()) return fail(tcp.error().message);
    tcp_ = std::move(tcp).value();
  }

 private:
  void on_connect(const Status& status) {
    if (!status.ok()) return end_with_error(status.error().message);
    if (Status s = tcp_->start(*this); !s.ok()) return end_with_error(s.error().message);
    if (options().body.empty()) {
      waiting_for_greeting_ = true;
      return;
    }
    if (Status s = tcp_->write(options().body); !s.ok()) return end_with_error(s.error().message);
    (void)tcp_->shutdown_write();
  }
  void on_data(const char* data, size_t length) override {
    received_.append(data, length);
    if (waiting_for_greeting_) {
      waiting_for_greeting_ = false;
      (void)tcp_->shutdown_write();
    }
  }
  void on_eof() override {
    tcp_.reset();
    std::string out = block_head();
    append_body(out, index(), received_);
    succeed(std::move(out), body_field(received_, "Hostname"), "");
  }
  void on_error(const Error& error) override { end_with_error(error.message); }

  void end_with_error(std::string error) {
    tcp_.reset();
    fail(std::move(error));
  }

  std::unique_ptr<net::TcpConnection> tcp_;
  std::string received_;
  bool waiting_for_greeting_ = false;
};

}  // namespace

// The shared h2c connection for --http2 and gRPC. Requests submitted before
// it is connected wait; if it fails, every request on it fails with the
// reason and the Client opens a new one for the requests that follow.
class Client::H2Channel final : private net::TcpConnection::Handler {
 public:
  H2Channel(Client& client, bool grpc) : client_(client), grpc_(grpc), events_(*this) {}

  void submit(size_t index) {
    if (!connecting_) {
      connecting_ = true;
      connect();
    }
    if (dead_) return client_.fail(index, error_);
    if (!session_) {
      queued_.push_back(index);
      return;
    }
    send(index);
  }

 private:
  struct Stream {
    size_t index = 0;
    bool have_head = false;
    http::ResponseHead head;
    std::string body;
    http::HeaderMap trailers;
  };

  struct Events final : http2::SessionHandler {
    explicit Events(H2Channel& c) : c(c) {}
    void on_response_head(int32_t id, http::ResponseHead&& head, bool) override {
      if (head.status < 200) return;  // interim
      auto it = c.streams_.find(id);
      if (it == c.streams_.end()) return;
      it->second.have_head = true;
      it->second.head = std::move(head);
    }
    void on_data(int32_t id, const char* data, size_t length) override {
      (void)c.session_->consume(id, length);
      auto it = c.streams_.find(id);
      if (it != c.streams_.end()) it->second.body.append(data, length);
    }
    void on_trailers(int32_t id, http::HeaderMap&& trailers) override {
      auto it = c.streams_.find(id);
      if (it != c.streams_.end()) it->second.trailers = std::move(trailers);
    }
    void on_end_stream(int32_t) override {}
    void on_stream_close(int32_t id, uint32_t code) override { c.close_stream(id, code); }
    H2Channel& c;
  };

  void connect() {
    auto tcp = net::TcpConnection::connect(client_.loop_, client_.dial_, client_.remaining(),
                                           [this](const Status& s) { on_connect(s); });
    if (!tcp.ok()) return fail_all(tcp.error().message);
    tcp_ = std::move(tcp).value();
  }

  void on_connect(const Status& status) {
    if (!status.ok()) return fail_all(status.error().message);
    if (Status s = tcp_->start(*this); !s.ok()) return fail_all(s.error().message);
    http2::SessionConfig config;
    config.role = http2::Role::client;
    config.initial_stream_window = 1024 * 1024;
    config.connection_window = 8 * 1024 * 1024;
    auto session = http2::Session::create(config, events_);
    if (!session.ok()) return fail_all(session.error().message);
    session_ = std::move(session).value();
    std::vector<size_t> queued = std::move(queued_);
    queued_.clear();
    for (size_t index : queued) send(index);
    flush();
  }

  void send(size_t index) {
    const ClientOptions& o = client_.options_;
    http::RequestHead head;
    head.version = http::Version::http2;
    head.scheme = "http";
    head.authority = client_.authority_;
    std::string body;
    if (grpc_) {
      head.method = "POST";
      head.target = client_.url_.target == "/" ? std::string(kEchoPath) : client_.url_.target;
      head.headers.add("content-type", "application/grpc");
      head.headers.add("te", "trailers");
      head.headers.add("user-agent", kUserAgent);
      for (const auto& [k, v] : client_.headers_) head.headers.add(lowercase(k), v);
      body = grpc_frame(encode_echo_message(o.body));
    } else {
      head.method = o.method;
      head.target = client_.url_.target;
      for (const auto& [k, v] : client_.headers_) head.headers.add(k, v);
      if (!head.headers.contains("user-agent")) head.headers.add("user-agent", kUserAgent);
      body = o.body;
      if (!body.empty()) head.headers.add("content-length", std::to_string(body.size()));
    }
    auto id = session_->submit_request(head, !body.empty());
    if (!id.ok()) return client_.fail(index, id.error().message);
    streams_[*id].index = index;
    if (!body.empty()) {
      if (Status s = session_->send_data(*id, body, true); !s.ok()) {
        (void)session_->reset_stream(*id, http2::error_code::internal_error);
      }
    }
    if (!in_session_) flush();
  }

  // Callbacks run inside produce() too (a stream closes as its last frame
  // goes out) and may submit the next requests: produce again until the
  // session has nothing more to say.
  void flush() {
    if (dead_ || !session_ || in_session_) return;
    while (true) {
      in_session_ = true;
      out_.clear();
      Status s = session_->produce(out_);
      in_session_ = false;
      if (!out_.empty()) (void)tcp_->write(out_);
      if (!s.ok()) return fail_all(s.error().message);
      if (dead_ || out_.empty() || !session_->wants_write()) return;
    }
  }

  void on_data(const char* data, size_t length) override {
    if (dead_ || !session_) return;
    in_session_ = true;
    Status s = session_->receive(data, length);
    in_session_ = false;
    flush();
    if (!s.ok()) fail_all(s.error().message);
  }
  void on_eof() override { fail_all("connection closed by the server"); }
  void on_error(const Error& error) override { fail_all(error.message); }

  void close_stream(int32_t id, uint32_t code) {
    auto it = streams_.find(id);
    if (it == streams_.end()) return;
    Stream s = std::move(it->second);
    streams_.erase(it);
    if (code != http2::error_code::no_error) {
      return client_.fail(s.index, "stream reset: " + std::string(http2::error_code_name(code)));
    }
    if (!s.have_head) return client_.fail(s.index, "stream ended without a response");
    if (grpc_) return finish_grpc(s);
    std::string out = client_.block_head(s.index);
    out.append("[").append(std::to_string(s.index)).append("] StatusCode=");
    out.append(std::to_string(s.head.status)).append("\n");
    append_response_headers(out, s.index, s.head.headers, true);
    append_body(out, s.index, s.body);
    client_.succeed(s.index, std::move(out), body_field(s.body, "Hostname"), std::to_string(s.head.status));
  }

  void finish_grpc(const Stream& s) {
    if (s.head.status != 200) {
      return client_.fail(s.index, "grpc: unexpected HTTP status " + std::to_string(s.head.status));
    }
    // Trailers-Only responses carry the status in the header block.
    const http::HeaderMap& status_block = s.trailers.contains("grpc-status") ? s.trailers : s.head.headers;
    const std::string* status = status_block.get("grpc-status");
    if (status == nullptr) return client_.fail(s.index, "grpc: the response has no grpc-status");
    if (*status != "0") {
      uint32_t code = 0;
      bool numeric = !status->empty() && status->size() <= 9 &&
                     std::all_of(status->begin(), status->end(), [](char c) { return c >= '0' && c <= '9'; });
      if (numeric) code = static_cast<uint32_t>(std::stoul(*status));
      const std::string* message = status_block.get("grpc-message");
      return client_.fail(s.index, "rpc error: code = " + (numeric ? grpc_status_name(code) : *status) +
                                       " desc = " + (message ? decode_grpc_message(*message) : ""));
    }
    auto frames = split_grpc_frames(s.body);
    if (!frames.ok()) return client_.fail(s.index, frames.error().message);
    if (frames->size() != 1) {
      return client_.fail(s.index, "grpc: expected one response message, got " + std::to_string(frames->size()));
    }
    auto message = decode_echo_message(frames->front());
    if (!message.ok()) return client_.fail(s.index, message.error().message);
    std::string out = client_.block_head(s.index);
    append_body(out, s.index, *message);
    append_response_headers(out, s.index, s.head.headers, false);
    client_.succeed(s.index, std::move(out), body_field(*message, "Hostname"), body_field(*message, "StatusCode"));
  }

  void fail_all(const std::string& why) {
    if (dead_) return;
    dead_ = true;
    error_ = why;
    std::vector<size_t> doomed = std::move(queued_);
    queued_.clear();
    for (const auto& [id, s] : streams_) doomed.push_back(s.index);
    streams_.clear();
    std::sort(doomed.begin(), doomed.end());
    // Detach first, so that requests started by these failures open a new connection.
    client_.drop_channel(this);
    for (size_t index : doomed) client_.fail(index, why);
  }

  Client& client_;
  bool grpc_;
  Events events_;
  std::unique_ptr<net::TcpConnection> tcp_;
  std::unique_ptr<http2::Session> session_;  // after tcp_: destroyed first
  std::vector<size_t> queued_;
  std::unordered_map<int32_t, Stream> streams_;
  std::string out_;
  std::string error_;
  bool connecting_ = false;
  bool dead_ = false;
  bool in_session_ = false;
};

Client::Client(event::EventLoop& loop, const ClientOptions& options, const Url& url, const net::Address& dial,
               Done done)
    : loop_(loop),
      options_(options),
      url_(url),
      dial_(dial),
      authority_(url.authority),
      done_(std::move(done)),
      slots_(static_cast<size_t>(options.count)),
      deadline_(loop, [this] { on_deadline(); }),
      pace_(loop, [this] { pump(); }) {
  for (const auto& [k, v] : options.headers) {
    if (http::iequals(k, "host")) {
      authority_ = v;
    } else {
      headers_.emplace_back(k, v);
    }
  }
}

Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::start(event::EventLoop& loop, const ClientOptions& options, Done done) {
  auto url = parse_url(options.url);
  if (!url.ok()) return std::move(url).error();
  std::string host = url->host;
  uint16_t port = url->port;
  if (!options.connect_to.empty()) {
    auto target = parse_host_port(options.connect_to);
    if (!target.ok()) return make_error("--connect-to: " + target.error().message);
    host = target->first;
    port = target->second;
  }
  auto dial = resolve(host, port);
  if (!dial.ok()) return std::move(dial).error();
  std::unique_ptr<Client> client(new Client(loop, options, *url, *dial, std::move(done)));
  uv_update_time(loop.uv());  // the cached loop time predates the (blocking) resolution
  client->started_at_ = loop.now();
  client->deadline_.start(options.timeout);
  client->pump();
  return client;
}

std::chrono::milliseconds Client::remaining() const {
  auto left = started_at_ + options_.timeout - loop_.now();
  return std::max(left, std::chrono::milliseconds(1));
}

std::string Client::block_head(size_t index) const {
  std::string i = "[" + std::to_string(index) + "] ";
  std::string out = i + "Url=" + options_.url + "\n";
  for (const auto& [k, v] : options_.headers) {
    out.append(i).append("Header=").append(url_.scheme == Scheme::grpc ? lowercase(k) : canonical_header_key(k));
    out.append(":").append(v).append("\n");
  }
  return out;
}

void Client::pump() {
  // Re-entered when a request fails as it starts: the outer loop carries on.
  if (over_ || pumping_) return;
  pumping_ = true;
  while (!over_ && next_ < slots_.size() && in_flight_ < static_cast<size_t>(options_.concurrency)) {
    if (options_.qps > 0) {
      auto due = started_at_ + std::chrono::milliseconds(std::llround(static_cast<double>(next_) * 1000.0 / options_.qps));
      auto now = loop_.now();
      if (now < due) {
        pace_.start(due - now);
        break;
      }
    }
    size_t index = next_++;
    ++in_flight_;
    start_request(index);
  }
  pumping_ = false;
}

void Client::start_request(size_t index) {
  bool shared = url_.scheme == Scheme::grpc || (url_.scheme == Scheme::http && options_.http2);
  if (shared) {
    if (!channel_) channel_ = std::make_unique<H2Channel>(*this, url_.scheme == Scheme::grpc);
    H2Channel* channel = channel_.get();  // submit() may drop it (on the next turn)
    channel->submit(index);
    return;
  }
  std::unique_ptr<Exchange> exchange;
  if (url_.scheme == Scheme::tcp) {
    exchange = std::make_unique<TcpExchange>(*this, index);
  } else {
    exchange = std::make_unique<Http1Exchange>(*this, index);
  }
  Exchange* raw = exchange.get();
  exchanges_[index] = std::move(exchange);
  raw->start();
}

void Client::succeed(size_t index, std::string output, std::string hostname, std::string code) {
  if (over_ || slots_[index].done) return;
  Slot& slot = slots_[index];
  slot.output = std::move(output);
  slot.hostname = std::move(hostname);
  slot.code = std::move(code);
  end_request(index);
}

void Client::fail(size_t index, std::string error) {
  if (over_ || slots_[index].done) return;
  slots_[index].error = std::move(error);
  end_request(index);
}

void Client::end_request(size_t index) {
  slots_[index].done = true;
  if (auto it = exchanges_.find(index); it != exchanges_.end()) {
    loop_.delete_later(std::move(it->second));  // it may be on the stack
    exchanges_.erase(it);
  }
  --in_flight_;
  if (++ended_ == slots_.size()) return finish();
  pump();
}

void Client::drop_channel(H2Channel* channel) {
  if (channel_.get() == channel) loop_.delete_later(std::move(channel_));
}

void Client::on_deadline() {
  std::string why = "timeout: the batch did not finish within " + duration_text(options_.timeout);
  for (Slot& slot : slots_) {
    if (!slot.done) {
      slot.done = true;
      slot.error = why;
    }
  }
  finish();
}

void Client::finish() {
  over_ = true;
  deadline_.stop();
  pace_.stop();
  for (auto& entry : exchanges_) loop_.delete_later(std::move(entry.second));
  exchanges_.clear();
  if (channel_) loop_.delete_later(std::move(channel_));

  ClientResult result;
  size_t failed = 0;
  std::map<std::string, size_t> hostnames;
  std::map<std::string, size_t> codes;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& slot = slots_[i];
    if (slot.error) {
      if (++failed <= kMaxErrorsShown) {
        result.err += "[" + std::to_string(i) + " error] " + *slot.error + "\n";
      }
      continue;
    }
    result.out += slot.output + "\n";
    ++hostnames[slot.hostname.empty() ? "(none)" : slot.hostname];
    if (!slot.code.empty()) ++codes[slot.code];
  }
  if (failed > kMaxErrorsShown) result.err += "... and " + std::to_string(failed - kMaxErrorsShown) + " more\n";
  if (failed > 0) {
    result.err += "trellis-echo client: " + std::to_string(failed) + " of " + std::to_string(slots_.size()) +
                  " requests failed\n";
    result.exit_code = 1;
  }
  if (options_.summary) {
    // Lower-case keys: the conformance parser's Hostname= and StatusCode=
    // patterns must not match summary lines.
    for (const auto& [name, n] : hostnames) {
      result.out += "[summary] hostname=" + name + " count=" + std::to_string(n) + "\n";
    }
    for (const auto& [code, n] : codes) {
      result.out += "[summary] code=" + code + " count=" + std::to_string(n) + "\n";
    }
    result.out += "[summary] errors=" + std::to_string(failed) + "\n";
  }
  // Never call out from here: the caller may be one of our own callbacks.
  loop_.defer([done = done_, result = std::move(result)] { done(result); });
}

ClientResult run_client(const ClientOptions& options) {
  auto fatal = [](const std::string& message) {
    ClientResult r;
    r.err = "trellis-echo client: " + message + "\n";
    r.exit_code = 1;
    return r;
  };
  auto loop = event::EventLoop::create();
  if (!loop.ok()) return fatal(loop.error().message);
  event::EventLoop& l = **loop;
  std::optional<ClientResult> result;
  auto client = Client::start(l, options, [&](ClientResult r) {
    result = std::move(r);
    l.stop();
  });
  if (!client.ok()) return fatal(client.error().message);
  l.run();
  client.value().reset();
  if (!result) return fatal("the event loop stopped before the batch finished");
  return std::move(*result);
}

}  // namespace trellis::support::echo
