#include "common/http2/session.h"

#include <doctest/doctest.h>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/allocation/allocation_counter.h"

namespace http = trellis::http;
namespace h2 = trellis::http2;
using trellis::Error;
using trellis::Status;

namespace {

void require_ok(const Status& s) {
  if (!s.ok()) FAIL(s.error().message);
}

// Everything a handler saw on one stream.
struct StreamLog {
  std::optional<http::RequestHead> request;
  std::vector<http::ResponseHead> responses;  // 1xx heads, then the final one
  std::string body;
  std::optional<http::HeaderMap> trailers;
  int ends = 0;  // head end_stream + on_trailers + on_end_stream: must end up 1
  std::optional<uint32_t> closed;
  size_t unconsumed = 0;
};

class Recorder : public h2::SessionHandler {
 public:
  void on_request_head(int32_t id, http::RequestHead&& head, bool end_stream) override {
    StreamLog& log = streams[id];
    log.request = std::move(head);
    log.ends += end_stream ? 1 : 0;
    ++open;
    peak_open = std::max(peak_open, open);
    if (on_request) on_request(id, end_stream);
  }
  void on_response_head(int32_t id, http::ResponseHead&& head, bool end_stream) override {
    StreamLog& log = streams[id];
    log.responses.push_back(std::move(head));
    log.ends += end_stream ? 1 : 0;
  }
  void on_data(int32_t id, const char* data, size_t len) override {
    StreamLog& log = streams[id];
    log.body.append(data, len);
    if (auto_consume) {
      require_ok(session->consume(id, len));
    } else {
      log.unconsumed += len;
    }
  }
  void on_trailers(int32_t id, http::HeaderMap&& trailers) override {
    StreamLog& log = streams[id];
    log.trailers = std::move(trailers);
    ++log.ends;
    if (on_end) on_end(id);
  }
  void on_end_stream(int32_t id) override {
    ++streams[id].ends;
    if (on_end) on_end(id);
  }
  void on_stream_close(int32_t id, uint32_t error_code) override {
    StreamLog& log = streams[id];
    CHECK_FALSE(log.closed.has_value());
    log.closed = error_code;
    if (log.request) --open;
    if (on_close) on_close(id);
  }
  void on_goaway(int32_t last_stream_id, uint32_t error_code) override {
    goaways.emplace_back(last_stream_id, error_code);
  }
  void on_stream_error(int32_t id, const Error& error) override {
    stream_errors.emplace_back(id, error.message);
  }
  void on_session_error(const Error& error) override { session_errors.push_back(error.message); }

  h2::Session* session = nullptr;
  bool auto_consume = true;
  std::function<void(int32_t, bool)> on_request;
  std::function<void(int32_t)> on_end;
  std::function<void(int32_t)> on_close;
  std::map<int32_t, StreamLog> streams;
  std::vector<std::pair<int32_t, uint32_t>> goaways;
  std::vector<std::pair<int32_t, std::string>> stream_errors;
  std::vector<std::string> session_errors;
  int open = 0;
  int peak_open = 0;
};

h2::SessionConfig config(h2::Role role) {
  h2::SessionConfig c;
  c.role = role;
  return c;
}

std::unique_ptr<h2::Session> make(const h2::SessionConfig& c, Recorder& r) {
  auto session = h2::Session::create(c, r);
  REQUIRE(session.ok());
  r.session = session->get();
  return std::move(session).value();
}

// Moves bytes both ways until neither side has anything left to write.
void pump(h2::Session& a, h2::Session& b) {
  for (int round = 0; round < 100000; ++round) {
    std::string ab, ba;
    require_ok(a.produce(ab));
    if (!ab.empty()) require_ok(b.receive(ab.data(), ab.size()));
    require_ok(b.produce(ba));
    if (!ba.empty()) require_ok(a.receive(ba.data(), ba.size()));
    if (ab.empty() && ba.empty()) return;
  }
  FAIL("pump did not settle");
}

http::RequestHead get(std::string target = "/") {
  http::RequestHead head;
  head.method = "GET";
  head.target = std::move(target);
  head.authority = "echo.shop.svc:8080";
  return head;
}

http::RequestHead post(std::string target = "/upload") {
  http::RequestHead head = get(std::move(target));
  head.method = "POST";
  return head;
}

http::ResponseHead status(int code) {
  http::ResponseHead head;
  head.status = code;
  return head;
}

std::vector<std::pair<std::string, std::string>> fields(const http::HeaderMap& headers) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const http::Header& h : headers) out.emplace_back(h.name, h.value);
  return out;
}

using Fields = std::vector<std::pair<std::string, std::string>>;

struct Frame {
  uint8_t type;
  uint8_t flags;
  uint32_t stream_id;
  std::string payload;
};

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
         (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3]));
}

// Splits serialized output into frames (after the client preface, if any).
std::vector<Frame> frames(const std::string& bytes) {
  std::vector<Frame> out;
  size_t at = bytes.rfind(NGHTTP2_CLIENT_MAGIC, 0) == 0 ? NGHTTP2_CLIENT_MAGIC_LEN : 0;
  while (at + 9 <= bytes.size()) {
    size_t len = (size_t(uint8_t(bytes[at])) << 16) | (size_t(uint8_t(bytes[at + 1])) << 8) | uint8_t(bytes[at + 2]);
    REQUIRE(at + 9 + len <= bytes.size());
    out.push_back(Frame{uint8_t(bytes[at + 3]), uint8_t(bytes[at + 4]), be32(bytes, at + 5) & 0x7fffffffu,
                        bytes.substr(at + 9, len)});
    at += 9 + len;
  }
  return out;
}

// A bare nghttp2 peer that sends whatever header fields it is given, so tests
// can put malformed messages on the wire. As a client it sends request();
// as a server it answers every request with `response` (and no body).
class RawPeer {
 public:
  explicit RawPeer(h2::Role role, Fields response = {}) : response_(std::move(response)) {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, [](nghttp2_session*, int32_t id, uint32_t code, void* self) {
          static_cast<RawPeer*>(self)->closes[id] = code;
          return 0;
        });
    nghttp2_session_callbacks_set_on_header_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
               const uint8_t* value, size_t valuelen, uint8_t, void* self) {
          if (std::string(reinterpret_cast<const char*>(name), namelen) == ":status") {
            static_cast<RawPeer*>(self)->statuses[frame->hd.stream_id] =
                std::string(reinterpret_cast<const char*>(value), valuelen);
          }
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cb, [](nghttp2_session* session, const nghttp2_frame* frame, void* self) {
          if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            auto nva = static_cast<RawPeer*>(self)->nv(static_cast<RawPeer*>(self)->response_);
            nghttp2_submit_response(session, frame->hd.stream_id, nva.data(), nva.size(), nullptr);
          }
          return 0;
        });
    if (role == h2::Role::client) {
      nghttp2_session_client_new(&session_, cb, this);
    } else {
      nghttp2_session_server_new(&session_, cb, this);
    }
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~RawPeer() { nghttp2_session_del(session_); }

  int32_t request(const Fields& header_fields, std::optional<std::string> body = std::nullopt) {
    fields_.push_back(header_fields);
    auto nva = nv(fields_.back());
    nghttp2_data_provider provider{};
    if (body) {
      bodies_.push_back(std::move(*body));
      provider.source.ptr = &bodies_.back();
      provider.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                                  nghttp2_data_source* source, void*) -> ssize_t {
        auto* rest = static_cast<std::string*>(source->ptr);
        size_t n = std::min(length, rest->size());
        std::memcpy(buf, rest->data(), n);
        rest->erase(0, n);
        if (rest->empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
        return static_cast<ssize_t>(n);
      };
    }
    return nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), body ? &provider : nullptr,
                                  nullptr);
  }

  void exchange(h2::Session& peer) {
    for (int round = 0; round < 10000; ++round) {
      std::string out;
      const uint8_t* data;
      ssize_t n;
      while ((n = nghttp2_session_mem_send(session_, &data)) > 0) out.append(reinterpret_cast<const char*>(data), n);
      if (!out.empty()) require_ok(peer.receive(out.data(), out.size()));
      std::string back;
      require_ok(peer.produce(back));
      if (!back.empty()) {
        REQUIRE(nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(back.data()), back.size()) ==
                static_cast<ssize_t>(back.size()));
      }
      if (out.empty() && back.empty()) return;
    }
    FAIL("exchange did not settle");
  }

  std::map<int32_t, uint32_t> closes;
  std::map<int32_t, std::string> statuses;

 private:
  // NO_COPY_NAME keeps nghttp2 from lowercasing names; it then reads them
  // when the frame goes out, so they must outlive the frame.
  static std::vector<nghttp2_nv> nv(const Fields& f) {
    std::vector<nghttp2_nv> nva;
    for (const auto& [name, value] : f) {
      nva.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                               reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                               value.size(), NGHTTP2_NV_FLAG_NO_COPY_NAME});
    }
    return nva;
  }

  nghttp2_session* session_ = nullptr;
  Fields response_;
  std::deque<std::string> bodies_;
  std::deque<Fields> fields_;
};

const Fields kGoodGet = {{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "a.example"}};

}  // namespace

TEST_CASE("config values outside HTTP/2's ranges are rejected with the field named") {
  Recorder r;
  auto check = [&](h2::SessionConfig c, const std::string& message) {
    auto s = h2::Session::create(c, r);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message == message);
  };
  h2::SessionConfig c;
  c.max_frame_size = 1000;
  check(c, "http2 config: max_frame_size: 1000 is outside [16384, 16777215]");
  c = {};
  c.connection_window = 1024;
  check(c, "http2 config: connection_window: 1024 is outside [65535, 2147483647]");
  c = {};
  c.initial_stream_window = 0x80000000u;
  check(c, "http2 config: initial_stream_window: 2147483648 is outside [1, 2147483647]");
  c = {};
  c.max_concurrent_streams = 0;
  check(c, "http2 config: max_concurrent_streams: 0 is outside [1, 2147483647]");
  c = {};
  c.max_header_list_size = 0;
  check(c, "http2 config: max_header_list_size: 0 is outside [1, 4294967295]");
  CHECK(h2::error_code_name(h2::error_code::refused_stream) == "REFUSED_STREAM");
  CHECK(h2::error_code_name(0x42) == "unknown");
}

TEST_CASE("a GET round trip maps pseudo-header fields onto the shared heads") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  sr.on_request = [&](int32_t id, bool end_stream) {
    CHECK(end_stream);
    http::ResponseHead head = status(200);
    head.headers.add("Content-Type", "text/plain");
    require_ok(server->submit_response(id, head, true));
    require_ok(server->send_data(id, "hello ", false));
    require_ok(server->send_data(id, "world", true));
  };
  http::RequestHead head = get("/a/b?x=1");
  head.headers.add("Accept", "*/*");
  auto id = client->submit_request(head, false);
  REQUIRE(id.ok());
  CHECK(*id == 1);
  CHECK(client->wants_write());
  pump(*client, *server);

  const StreamLog& req = sr.streams[1];
  REQUIRE(req.request);
  CHECK(req.request->method == "GET");
  CHECK(req.request->target == "/a/b?x=1");
  CHECK(req.request->path() == "/a/b");
  CHECK(req.request->authority == "echo.shop.svc:8080");
  CHECK(req.request->scheme == "http");
  CHECK(req.request->version == http::Version::http2);
  CHECK(fields(req.request->headers) == Fields{{"accept", "*/*"}});
  CHECK(req.ends == 1);
  CHECK(req.closed == h2::error_code::no_error);

  const StreamLog& res = cr.streams[1];
  REQUIRE(res.responses.size() == 1);
  CHECK(res.responses[0].status == 200);
  CHECK(res.responses[0].version == http::Version::http2);
  CHECK(fields(res.responses[0].headers) == Fields{{"content-type", "text/plain"}});
  CHECK(res.body == "hello world");
  CHECK(res.ends == 1);
  CHECK(res.closed == h2::error_code::no_error);
  CHECK(client->open_streams() == 0);
  CHECK(server->open_streams() == 0);
  CHECK_FALSE(client->is_closed());
  CHECK(client->want_read());
  CHECK_FALSE(client->wants_write());
}

TEST_CASE("a slow consumer stalls a 1 MiB upload at the stream window until it consumes") {
  Recorder cr, sr;
  sr.auto_consume = false;
  auto client = make(config(h2::Role::client), cr);
  h2::SessionConfig sc = config(h2::Role::server);
  sc.initial_stream_window = 16384;
  auto server = make(sc, sr);
  pump(*client, *server);  // SETTINGS exchanged: the client knows the 16 KiB window

  std::string payload(1 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 % 251);
  auto id = client->submit_request(post(), true);
  REQUIRE(id.ok());

  // The proxy's loop: read the source only while the stream's queue is low.
  constexpr size_t kHighWater = 64 * 1024;
  size_t offset = 0;
  auto feed = [&] {
    while (offset < payload.size() && client->queued_bytes(*id) < kHighWater) {
      size_t n = std::min<size_t>(16384, payload.size() - offset);
      require_ok(client->send_data(*id, std::string_view(payload).substr(offset, n), offset + n == payload.size()));
      offset += n;
    }
  };
  feed();
  pump(*client, *server);
  StreamLog& log = sr.streams[*id];
  CHECK(log.body.size() == 16384);
  CHECK(client->queued_bytes(*id) == kHighWater - 16384);
  feed();
  pump(*client, *server);
  // Nothing was consumed: not one more byte moves, and the source stays unread.
  CHECK(log.body.size() == 16384);
  CHECK(client->queued_bytes(*id) == kHighWater);
  CHECK(client->queued_bytes() == kHighWater);
  CHECK(offset == kHighWater + 16384);

  int rounds = 0;
  while (log.ends == 0) {
    REQUIRE(++rounds < 2000);
    size_t n = std::min<size_t>(4096, log.unconsumed);
    require_ok(server->consume(*id, n));
    log.unconsumed -= n;
    feed();
    pump(*client, *server);
    CHECK(log.unconsumed <= 16384);
    CHECK(client->queued_bytes(*id) <= kHighWater + 16384);  // feed() overshoots by one read
  }
  CHECK(log.body == payload);
  CHECK(client->queued_bytes() == 0);
  auto bad = server->consume(*id, log.unconsumed + 1);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "http2: stream 1: consume(" + std::to_string(log.unconsumed + 1) +
                                   ") exceeds the " + std::to_string(log.unconsumed) +
                                   " bytes received and not consumed");
}

TEST_CASE("credit for bytes never consumed returns to the connection when the stream closes") {
  Recorder cr, sr;
  sr.auto_consume = false;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  pump(*client, *server);
  auto first = client->submit_request(post("/first"), true);
  REQUIRE(first.ok());
  require_ok(client->send_data(*first, std::string(65535, 'a'), false));
  pump(*client, *server);
  CHECK(sr.streams[*first].body.size() == 65535);  // the whole connection window

  require_ok(server->reset_stream(*first, h2::error_code::cancel));
  pump(*client, *server);
  CHECK(cr.streams[*first].closed == h2::error_code::cancel);
  CHECK(sr.streams[*first].closed == h2::error_code::cancel);

  sr.auto_consume = true;
  auto second = client->submit_request(post("/second"), true);
  REQUIRE(second.ok());
  require_ok(client->send_data(*second, std::string(20000, 'b'), true));
  pump(*client, *server);
  CHECK(sr.streams[*second].body.size() == 20000);
  CHECK(sr.streams[*second].ends == 1);
}

TEST_CASE("many streams share one connection within the server's concurrency limit") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  h2::SessionConfig sc = config(h2::Role::server);
  sc.max_concurrent_streams = 8;
  auto server = make(sc, sr);
  sr.on_end = [&](int32_t id) {
    require_ok(server->submit_response(id, status(200), true));
    require_ok(server->send_data(id, "echo:" + sr.streams[id].body, true));
  };
  pump(*client, *server);
  CHECK(client->peer_max_concurrent_streams() == 8);

  std::vector<int32_t> ids;
  for (int i = 0; i < 100; ++i) {
    auto id = client->submit_request(post("/n/" + std::to_string(i)), true);
    REQUIRE(id.ok());
    require_ok(client->send_data(*id, "body-" + std::to_string(i), true));
    ids.push_back(*id);
  }
  pump(*client, *server);
  for (int i = 0; i < 100; ++i) {
    const StreamLog& log = cr.streams[ids[i]];
    CHECK(log.body == "echo:body-" + std::to_string(i));
    CHECK(sr.streams[ids[i]].request->target == "/n/" + std::to_string(i));
    CHECK(log.closed == h2::error_code::no_error);
  }
  CHECK(sr.peak_open <= 8);
  CHECK(sr.peak_open >= 2);
  CHECK(server->stats().refused_streams == 0);
}

TEST_CASE("gRPC-style trailers travel both ways") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  sr.on_end = [&](int32_t id) {
    http::ResponseHead head = status(200);
    head.headers.add("content-type", "application/grpc");
    require_ok(server->submit_response(id, head, true));
    require_ok(server->send_data(id, std::string("\0\0\0\0\x02hi", 7), false));
  };
  http::RequestHead head = post("/pkg.Service/Method");
  head.headers.add("content-type", "application/grpc");
  head.headers.add("te", "trailers");
  auto id = client->submit_request(head, true);
  REQUIRE(id.ok());
  require_ok(client->send_data(*id, std::string("\0\0\0\0\x03req", 8), false));
  http::HeaderMap request_trailers;
  request_trailers.add("x-checksum", "abc");
  require_ok(client->submit_trailers(*id, request_trailers));
  pump(*client, *server);

  const StreamLog& req = sr.streams[*id];
  CHECK(fields(req.request->headers) == Fields{{"content-type", "application/grpc"}, {"te", "trailers"}});
  CHECK(req.body == std::string("\0\0\0\0\x03req", 8));
  REQUIRE(req.trailers);
  CHECK(fields(*req.trailers) == Fields{{"x-checksum", "abc"}});
  CHECK(req.ends == 1);

  const StreamLog& res = cr.streams[*id];
  CHECK(res.body == std::string("\0\0\0\0\x02hi", 7));
  CHECK(res.ends == 0);
  // The body queue is empty and waiting: trailers resume it and end it.
  http::HeaderMap trailers;
  trailers.add("grpc-status", "0");
  trailers.add("Grpc-Message", "OK");
  require_ok(server->submit_trailers(*id, trailers));
  pump(*client, *server);
  REQUIRE(res.trailers);
  CHECK(fields(*res.trailers) == Fields{{"grpc-status", "0"}, {"grpc-message", "OK"}});
  CHECK(res.ends == 1);
  CHECK(res.closed == h2::error_code::no_error);

  // After trailers the message is over.
  auto late = client->send_data(*id, "x", true);
  REQUIRE_FALSE(late.ok());
  CHECK(late.error().message == "http2: stream 1: not open");
}

TEST_CASE("a trailers-only response ends the stream with its head") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  sr.on_request = [&](int32_t id, bool) {
    http::ResponseHead head = status(200);
    head.headers.add("grpc-status", "12");
    require_ok(server->submit_response(id, head, false));
    auto late = server->send_data(id, "x", true);
    REQUIRE_FALSE(late.ok());
    CHECK(late.error().message == "http2: stream 1: the head ended the message (has_body was false)");
  };
  auto id = client->submit_request(get(), false);
  REQUIRE(id.ok());
  pump(*client, *server);
  const StreamLog& res = cr.streams[*id];
  REQUIRE(res.responses.size() == 1);
  CHECK(*res.responses[0].headers.get("grpc-status") == "12");
  CHECK(res.ends == 1);
  CHECK_FALSE(res.trailers);
}

TEST_CASE("informational responses precede the final one") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  sr.on_request = [&](int32_t id, bool) {
    require_ok(server->submit_response(id, status(100), true));
    http::ResponseHead hints = status(103);
    hints.headers.add("link", "</style.css>; rel=preload");
    require_ok(server->submit_response(id, hints, false));
  };
  http::RequestHead head = post();
  head.headers.add("expect", "100-continue");
  auto id = client->submit_request(head, true);
  REQUIRE(id.ok());
  pump(*client, *server);
  REQUIRE(cr.streams[*id].responses.size() == 2);
  CHECK(cr.streams[*id].responses[0].status == 100);
  CHECK(cr.streams[*id].responses[1].status == 103);
  CHECK(cr.streams[*id].ends == 0);

  require_ok(client->send_data(*id, "payload", true));
  pump(*client, *server);
  require_ok(server->submit_response(*id, status(201), false));
  pump(*client, *server);
  REQUIRE(cr.streams[*id].responses.size() == 3);
  CHECK(cr.streams[*id].responses[2].status == 201);
  CHECK(cr.streams[*id].ends == 1);
  CHECK(cr.streams[*id].closed == h2::error_code::no_error);
  CHECK(sr.streams[*id].body == "payload");
}

TEST_CASE("RST_STREAM from the client reaches the server and drops the queued body") {
  Recorder cr, sr;
  sr.auto_consume = false;
  auto client = make(config(h2::Role::client), cr);
  h2::SessionConfig sc = config(h2::Role::server);
  sc.initial_stream_window = 16384;
  auto server = make(sc, sr);
  pump(*client, *server);
  auto id = client->submit_request(post(), true);
  REQUIRE(id.ok());
  require_ok(client->send_data(*id, std::string(50000, 'x'), false));
  pump(*client, *server);
  CHECK(client->queued_bytes() == 50000 - 16384);

  require_ok(client->reset_stream(*id, h2::error_code::cancel));
  CHECK(client->queued_bytes() == 0);
  auto again = client->reset_stream(*id, h2::error_code::cancel);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message == "http2: stream 1: not open");
  pump(*client, *server);
  CHECK(cr.streams[*id].closed == h2::error_code::cancel);
  CHECK(sr.streams[*id].closed == h2::error_code::cancel);
  CHECK(client->open_streams() == 0);
  CHECK(server->open_streams() == 0);
  auto late = client->send_data(*id, "more", true);
  REQUIRE_FALSE(late.ok());
  CHECK(late.error().message == "http2: stream 1: not open");
}

TEST_CASE("RST_STREAM from the server closes the client's stream with its code") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  sr.on_request = [&](int32_t id, bool) { require_ok(server->reset_stream(id, h2::error_code::internal_error)); };
  auto first = client->submit_request(get("/boom"), false);
  REQUIRE(first.ok());
  pump(*client, *server);
  CHECK(cr.streams[*first].closed == h2::error_code::internal_error);
  CHECK(sr.streams[*first].closed == h2::error_code::internal_error);
  CHECK(cr.streams[*first].responses.empty());
  // The connection carries on.
  sr.on_request = [&](int32_t id, bool) { require_ok(server->submit_response(id, status(204), false)); };
  auto second = client->submit_request(get("/fine"), false);
  REQUIRE(second.ok());
  pump(*client, *server);
  CHECK(cr.streams[*second].responses.at(0).status == 204);
  CHECK(cr.streams[*second].closed == h2::error_code::no_error);
}

TEST_CASE("streams over max_concurrent_streams are refused and safe to retry") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  h2::SessionConfig sc = config(h2::Role::server);
  sc.max_concurrent_streams = 2;
  auto server = make(sc, sr);
  // Hold the responses so streams stay open while the others arrive.
  std::vector<int32_t> held;
  sr.on_request = [&](int32_t id, bool) { held.push_back(id); };
  // Before the server's SETTINGS arrive the client assumes 100 streams, so all
  // four requests go out in the first flight.
  std::vector<int32_t> ids;
  for (int i = 0; i < 4; ++i) {
    auto id = client->submit_request(get("/" + std::to_string(i)), false);
    REQUIRE(id.ok());
    ids.push_back(*id);
  }
  pump(*client, *server);
  CHECK(held == std::vector<int32_t>{1, 3});
  CHECK(cr.streams[5].closed == h2::error_code::refused_stream);
  CHECK(cr.streams[7].closed == h2::error_code::refused_stream);
  CHECK(server->stats().refused_streams == 2);
  CHECK(sr.streams.count(5) == 0);

  for (int32_t id : held) require_ok(server->submit_response(id, status(200), false));
  pump(*client, *server);
  CHECK(cr.streams[1].closed == h2::error_code::no_error);
  CHECK(cr.streams[3].closed == h2::error_code::no_error);
}

TEST_CASE("graceful GOAWAY from the server lets in-flight streams finish, including ones that crossed it") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  auto first = client->submit_request(get("/first"), false);
  REQUIRE(first.ok());
  pump(*client, *server);
  REQUIRE(sr.streams[*first].request);

  require_ok(server->shutdown_gracefully());
  std::string notice;
  require_ok(server->produce(notice));
  // The client sends another request before it sees the notice.
  auto second = client->submit_request(get("/second"), false);
  REQUIRE(second.ok());
  std::string crossing;
  require_ok(client->produce(crossing));
  require_ok(server->receive(crossing.data(), crossing.size()));
  require_ok(client->receive(notice.data(), notice.size()));
  REQUIRE(cr.goaways.size() == 1);
  CHECK(cr.goaways[0] == std::make_pair(int32_t{0x7fffffff}, h2::error_code::no_error));

  pump(*client, *server);  // PING round trip, then the final GOAWAY
  REQUIRE(cr.goaways.size() == 2);
  CHECK(cr.goaways[1] == std::make_pair(*second, h2::error_code::no_error));
  REQUIRE(sr.streams[*second].request);
  auto refused = client->submit_request(get("/third"), false);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message == "http2: no new streams on this connection: it is going away");

  CHECK_FALSE(server->is_closed());
  require_ok(server->submit_response(*first, status(200), true));
  require_ok(server->send_data(*first, "one", true));
  require_ok(server->submit_response(*second, status(200), true));
  require_ok(server->send_data(*second, "two", true));
  pump(*client, *server);
  CHECK(cr.streams[*first].body == "one");
  CHECK(cr.streams[*second].body == "two");
  CHECK(cr.streams[*first].closed == h2::error_code::no_error);
  CHECK(cr.streams[*second].closed == h2::error_code::no_error);
  CHECK(server->is_closed());
  CHECK(client->is_closed());
}

TEST_CASE("graceful GOAWAY from the client stops new requests but finishes the open ones") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  auto id = client->submit_request(get(), false);
  REQUIRE(id.ok());
  pump(*client, *server);
  require_ok(client->shutdown_gracefully());
  auto refused = client->submit_request(get(), false);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message == "http2: no new streams on this connection: it is going away");
  pump(*client, *server);
  CHECK(sr.goaways == std::vector<std::pair<int32_t, uint32_t>>{{0, h2::error_code::no_error}});
  require_ok(server->submit_response(*id, status(200), false));
  pump(*client, *server);
  CHECK(cr.streams[*id].closed == h2::error_code::no_error);
  CHECK(client->is_closed());
  CHECK(server->is_closed());
}

TEST_CASE("an immediate GOAWAY closes the open streams on the spot") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  auto id = client->submit_request(get(), false);
  REQUIRE(id.ok());
  pump(*client, *server);
  require_ok(server->terminate(h2::error_code::no_error));
  CHECK(sr.streams[*id].closed == h2::error_code::cancel);
  CHECK(sr.session_errors.empty());
  pump(*client, *server);
  CHECK(server->is_closed());
  CHECK(cr.goaways == std::vector<std::pair<int32_t, uint32_t>>{{*id, h2::error_code::no_error}});
  // The server may have processed stream 1, so it stays open on the client
  // until the transport goes.
  CHECK_FALSE(cr.streams[*id].closed);
  client->abort(h2::error_code::cancel);
  CHECK(cr.streams[*id].closed == h2::error_code::cancel);
  CHECK(client->is_closed());
  CHECK_FALSE(client->wants_write());
}

TEST_CASE("abort reports requests that never left as refused, the others with the given code") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  auto sent = client->submit_request(get(), false);
  REQUIRE(sent.ok());
  pump(*client, *server);
  auto unsent = client->submit_request(get(), false);
  REQUIRE(unsent.ok());
  client->abort(h2::error_code::internal_error);
  CHECK(cr.streams[*sent].closed == h2::error_code::internal_error);
  CHECK(cr.streams[*unsent].closed == h2::error_code::refused_stream);
  auto after = client->submit_request(get(), false);
  REQUIRE_FALSE(after.ok());
  CHECK(after.error().message == "http2: connection aborted");
}

TEST_CASE("garbage instead of the client preface fails the server session") {
  Recorder sr;
  auto server = make(config(h2::Role::server), sr);
  std::string http1 = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
  Status s = server->receive(http1.data(), http1.size());
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message == "http2: bad client preface: the peer does not speak HTTP/2");
  CHECK(s.error().code == int(h2::error_code::protocol_error));
  CHECK(sr.session_errors == std::vector<std::string>{s.error().message});
  // RFC 9113 §3.4: nothing is owed to a peer that does not speak HTTP/2.
  CHECK_FALSE(server->wants_write());
  CHECK_FALSE(server->want_read());
  CHECK(server->is_closed());
  Status again = server->receive("x", 1);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message == s.error().message);
  CHECK(sr.session_errors.size() == 1);
}

TEST_CASE("a client that receives something other than SETTINGS sends GOAWAY PROTOCOL_ERROR") {
  Recorder cr;
  auto client = make(config(h2::Role::client), cr);
  auto id = client->submit_request(get(), false);
  REQUIRE(id.ok());
  std::string out;
  require_ok(client->produce(out));
  std::string reply = "HTTP/1.1 400 Bad Request\r\n\r\n";
  Status s = client->receive(reply.data(), reply.size());
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message == "http2: connection error PROTOCOL_ERROR: SETTINGS expected");
  CHECK(s.error().code == int(h2::error_code::protocol_error));
  CHECK(cr.streams[*id].closed == h2::error_code::protocol_error);
  CHECK(cr.session_errors == std::vector<std::string>{s.error().message});

  REQUIRE(client->wants_write());
  out.clear();
  require_ok(client->produce(out));
  std::vector<Frame> sent = frames(out);
  REQUIRE_FALSE(sent.empty());
  CHECK(sent.back().type == NGHTTP2_GOAWAY);
  CHECK(be32(sent.back().payload, 4) == h2::error_code::protocol_error);
  CHECK(sent.back().payload.substr(8) == "SETTINGS expected");
  CHECK(client->is_closed());
}

TEST_CASE("a bad frame after a valid preface is a connection error with nghttp2's reason") {
  Recorder sr;
  auto server = make(config(h2::Role::server), sr);
  std::string bytes(NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
  bytes += std::string("\0\0\0\x04\0\0\0\0\0", 9);       // empty SETTINGS
  bytes += std::string("\0\0\x01\0\0\0\0\0\0", 9) + "x";  // DATA on stream 0
  Status s = server->receive(bytes.data(), bytes.size());
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message == "http2: connection error PROTOCOL_ERROR: DATA: stream_id == 0");
  std::string out;
  require_ok(server->produce(out));
  std::vector<Frame> sent = frames(out);
  REQUIRE_FALSE(sent.empty());
  CHECK(sent.back().type == NGHTTP2_GOAWAY);
  CHECK(be32(sent.back().payload, 4) == h2::error_code::protocol_error);
  CHECK(server->is_closed());
}

TEST_CASE("malformed request header blocks reset only their own stream") {
  Recorder sr;
  auto server = make(config(h2::Role::server), sr);
  sr.on_request = [&](int32_t id, bool) {
    require_ok(server->submit_response(id, status(200), true));
    require_ok(server->send_data(id, "ok", true));
  };
  RawPeer raw(h2::Role::client);
  auto with = [](Fields f, std::pair<std::string, std::string> extra) {
    f.push_back(std::move(extra));
    return f;
  };
  struct Case {
    Fields fields;
    std::string error;
  };
  std::vector<Case> cases = {
      {with(kGoodGet, {"X-Upper", "1"}), "header name 'X-Upper' is not lowercase"},
      {{{":method", "GET"}, {":scheme", "http"}, {":authority", "a.example"}}, "request without :path"},
      {with(kGoodGet, {"connection", "keep-alive"}), "connection-specific header field 'connection'"},
      {with(kGoodGet, {"transfer-encoding", "chunked"}), "connection-specific header field 'transfer-encoding'"},
      {with(kGoodGet, {"te", "gzip"}), "te header field other than 'trailers'"},
      {with(kGoodGet, {"host", "b.example"}), "host 'b.example' does not match :authority 'a.example'"},
      {with(with(kGoodGet, {"x-a", "1"}), {":path", "/again"}), "pseudo-header field ':path' after regular fields"},
      {with(kGoodGet, {":path", "/again"}), "repeated ':path'"},
      {with(kGoodGet, {":status", "200"}), "unknown pseudo-header field ':status'"},
      {with(kGoodGet, {"x-bad", "a\r\nb"}), "invalid header field 'x-bad'"},
      {with(kGoodGet, {"content-length", "x"}), "invalid or repeated content-length"},
      {{{":method", "GET"}, {":scheme", "http"}, {":path", "relative"}, {":authority", "a.example"}},
       "':path' 'relative' is not origin-form"},
  };
  int32_t good = raw.request(kGoodGet);
  std::vector<int32_t> bad;
  for (const Case& c : cases) bad.push_back(raw.request(c.fields));
  int32_t good_after = raw.request(kGoodGet);
  raw.exchange(*server);

  CHECK(raw.statuses[good] == "200");
  CHECK(raw.closes[good] == h2::error_code::no_error);
  CHECK(raw.statuses[good_after] == "200");
  REQUIRE(sr.stream_errors.size() == cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(i);
    CHECK(raw.closes[bad[i]] == h2::error_code::protocol_error);
    CHECK(sr.stream_errors[i].first == bad[i]);
    CHECK(sr.stream_errors[i].second == "http2: stream " + std::to_string(bad[i]) + ": " + cases[i].error);
    CHECK(sr.streams.count(bad[i]) == 0);  // the handler never saw them
  }
  CHECK(server->stats().malformed_streams == cases.size());
  CHECK(server->open_streams() == 0);
}

TEST_CASE("a body that contradicts content-length resets the stream the handler knows") {
  Recorder sr;
  auto server = make(config(h2::Role::server), sr);
  RawPeer raw(h2::Role::client);
  Fields f = {{":method", "POST"}, {":scheme", "http"}, {":path", "/"}, {":authority", "a.example"},
              {"content-length", "10"}};
  int32_t id = raw.request(f, std::string("hello"));
  raw.exchange(*server);
  REQUIRE(sr.streams[id].request);
  CHECK(sr.streams[id].body == "hello");
  CHECK(sr.streams[id].ends == 0);
  CHECK(sr.streams[id].closed == h2::error_code::protocol_error);
  CHECK(raw.closes[id] == h2::error_code::protocol_error);
  REQUIRE(sr.stream_errors.size() == 1);
  CHECK(sr.stream_errors[0].second == "http2: stream 1: body length does not match content-length");
}

TEST_CASE("an oversized request header list gets 431 and the connection carries on") {
  Recorder sr;
  h2::SessionConfig sc = config(h2::Role::server);
  sc.max_header_list_size = 1024;
  auto server = make(sc, sr);
  sr.on_request = [&](int32_t id, bool) { require_ok(server->submit_response(id, status(200), false)); };
  RawPeer raw(h2::Role::client);
  Fields big = kGoodGet;
  big.emplace_back("x-big", std::string(2000, 'v'));
  int32_t rejected = raw.request(big);
  int32_t fine = raw.request(kGoodGet);
  raw.exchange(*server);
  CHECK(raw.statuses[rejected] == "431");
  CHECK(raw.closes[rejected] == h2::error_code::no_error);
  CHECK(raw.statuses[fine] == "200");
  REQUIRE(sr.stream_errors.size() == 1);
  CHECK(sr.stream_errors[0].second == "http2: stream 1: header list exceeds max_header_list_size (1024 bytes)");
  CHECK(sr.streams.count(rejected) == 0);
  CHECK(server->stats().malformed_streams == 1);

  // Our own client respects the limit the server advertised.
  Recorder cr, sr2;
  auto client = make(config(h2::Role::client), cr);
  auto server2 = make(sc, sr2);
  pump(*client, *server2);
  http::RequestHead head = get();
  head.headers.add("x-big", std::string(2000, 'v'));
  auto id = client->submit_request(head, false);
  REQUIRE_FALSE(id.ok());
  CHECK(id.error().message == "http2: header list of 2220 bytes exceeds the limit of 1024 bytes");
}

TEST_CASE("HTTP/1 Host becomes :authority and connection-specific fields are never sent") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  sr.on_request = [&](int32_t id, bool) {
    http::ResponseHead head = status(200);
    head.headers.add("Connection", "close");
    head.headers.add("Keep-Alive", "timeout=5");
    head.headers.add("Content-Type", "text/plain");
    require_ok(server->submit_response(id, head, false));
  };
  http::RequestHead head;  // as the HTTP/1 codec hands it over, minus its Host move
  head.method = "GET";
  head.target = "/";
  head.headers.add("Host", "Example.COM:8080");
  head.headers.add("Connection", "close, X-Hop");
  head.headers.add("X-Hop", "1");
  head.headers.add("Keep-Alive", "timeout=5");
  head.headers.add("Proxy-Connection", "keep-alive");
  head.headers.add("Transfer-Encoding", "chunked");
  head.headers.add("Upgrade", "h2c");
  head.headers.add("TE", "trailers, deflate");
  head.headers.add("X-Mixed-Case", "  padded  ");
  head.headers.add("Cookie", "a=1");
  auto id = client->submit_request(head, false);
  REQUIRE(id.ok());
  pump(*client, *server);
  const http::RequestHead& got = *sr.streams[*id].request;
  CHECK(got.authority == "Example.COM:8080");
  CHECK(fields(got.headers) == Fields{{"x-mixed-case", "padded"}, {"te", "trailers"}, {"cookie", "a=1"}});
  CHECK(fields(cr.streams[*id].responses.at(0).headers) == Fields{{"content-type", "text/plain"}});
}

TEST_CASE("a received Host fills in a missing :authority and cookie crumbs are joined") {
  Recorder sr;
  auto server = make(config(h2::Role::server), sr);
  RawPeer raw(h2::Role::client);
  int32_t host_only = raw.request({{":method", "GET"}, {":scheme", "http"}, {":path", "/"},
                                   {"host", "h.example"}, {"cookie", "a=1"}, {"x", "y"}, {"cookie", "b=2"}});
  int32_t both = raw.request({{":method", "GET"}, {":scheme", "http"}, {":path", "/"},
                              {":authority", "a.example"}, {"host", "A.Example"}});
  raw.exchange(*server);
  const http::RequestHead& a = *sr.streams[host_only].request;
  CHECK(a.authority == "h.example");
  CHECK(fields(a.headers) == Fields{{"x", "y"}, {"cookie", "a=1; b=2"}});
  const http::RequestHead& b = *sr.streams[both].request;
  CHECK(b.authority == "a.example");
  CHECK(b.headers.empty());
}

TEST_CASE("submit functions reject what HTTP/2 cannot carry") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  auto request_error = [&](const http::RequestHead& head) {
    auto id = client->submit_request(head, false);
    REQUIRE_FALSE(id.ok());
    return id.error().message;
  };
  http::RequestHead h = get();
  h.authority.clear();
  CHECK(request_error(h) == "http2: request.authority: empty and no Host header");
  h = get("http://a.example/");
  CHECK(request_error(h) == "http2: request.target: 'http://a.example/' is not origin-form (must start with '/')");
  h = get();
  h.method.clear();
  CHECK(request_error(h) == "http2: request.method: empty");
  h = get();
  h.method = "GE T";
  CHECK(request_error(h) == "http2: request.method: 'GE?T' is not a token");
  h = get();
  h.headers.add(":path", "/x");
  CHECK(request_error(h) == "http2: request.headers[':path']: pseudo-header fields come from the message head");
  h = get();
  h.headers.add("X-Bad", "a\r\nInjected: 1");
  CHECK(request_error(h) == "http2: request.headers['X-Bad']: invalid value (control characters)");
  h = get();
  h.headers.add("bad name", "v");
  CHECK(request_error(h) == "http2: request.headers['bad?name']: invalid name");

  auto on_server = server->submit_request(get(), false);
  REQUIRE_FALSE(on_server.ok());
  CHECK(on_server.error().message == "http2: submit_request() on a server session");
  Status on_client = client->submit_response(1, status(200), false);
  REQUIRE_FALSE(on_client.ok());
  CHECK(on_client.error().message == "http2: submit_response() on a client session");

  std::vector<std::string> errors;
  sr.on_request = [&](int32_t id, bool) {
    auto capture = [&](const Status& s) { errors.push_back(s.ok() ? "ok" : s.error().message); };
    capture(server->send_data(id, "early", false));
    capture(server->submit_response(id, status(101), false));
    capture(server->submit_response(id, status(600), false));
    capture(server->submit_response(id, status(200), true));
    capture(server->submit_response(id, status(200), true));
    http::HeaderMap trailers;
    trailers.add(":status", "200");
    capture(server->submit_trailers(id, trailers));
    capture(server->send_data(id, "done", true));
    capture(server->send_data(id, "late", false));
    capture(server->submit_trailers(id, http::HeaderMap()));
    capture(server->send_data(id + 2, "x", false));
  };
  auto id = client->submit_request(get(), false);
  REQUIRE(id.ok());
  pump(*client, *server);
  CHECK(errors == std::vector<std::string>{
                      "http2: stream 1: no response submitted",
                      "http2: response.status: 101 Switching Protocols does not exist in HTTP/2",
                      "http2: response.status: 600 is outside 100..599",
                      "ok",
                      "http2: stream 1: response already submitted",
                      "http2: trailers[':status']: pseudo-header fields come from the message head",
                      "ok",
                      "http2: stream 1: the message has already ended",
                      "http2: stream 1: the message has already ended",
                      "http2: stream 3: not open",
                  });
  CHECK(cr.streams[*id].body == "done");
  h = get();
  h.method = "CONNECT";
  h.target.clear();
  h.scheme.clear();
  CHECK(client->submit_request(h, true).ok());
}

TEST_CASE("each stream carries the owner's pointer until it closes") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  auto server = make(config(h2::Role::server), sr);
  int request_state = 7;
  int exchange_state = 9;
  auto id = client->submit_request(get(), false, &request_state);
  REQUIRE(id.ok());
  CHECK(client->stream_data<int>(*id) == &request_state);
  void* seen_at_close = nullptr;
  sr.on_request = [&](int32_t sid, bool) {
    CHECK(server->stream_user_data(sid) == nullptr);
    require_ok(server->set_stream_user_data(sid, &exchange_state));
    require_ok(server->submit_response(sid, status(200), false));
  };
  sr.on_close = [&](int32_t sid) { seen_at_close = server->stream_user_data(sid); };
  pump(*client, *server);
  CHECK(seen_at_close == &exchange_state);
  CHECK(server->stream_user_data(*id) == nullptr);  // closed and forgotten
  CHECK(client->stream_user_data(*id) == nullptr);
  Status unknown = server->set_stream_user_data(99, &exchange_state);
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message == "http2: stream 99: not open");
}

TEST_CASE("malformed or oversized responses reset the client's stream with PROTOCOL_ERROR") {
  struct Case {
    Fields response;
    std::string error;
  };
  std::vector<Case> cases = {
      {{{":status", "200"}, {"X-Upper", "1"}}, "header name 'X-Upper' is not lowercase"},
      {{{"content-type", "text/plain"}}, "response without :status"},
      {{{":status", "2000"}}, "invalid ':status' value"},
      {{{":status", "101"}}, "invalid ':status' value"},
      {{{":status", "100"}}, "informational response with END_STREAM"},
      {{{":status", "200"}, {"x-big", std::string(2000, 'v')}},
       "header list exceeds max_header_list_size (1024 bytes)"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.error);
    Recorder cr;
    h2::SessionConfig cc = config(h2::Role::client);
    cc.max_header_list_size = 1024;
    auto client = make(cc, cr);
    RawPeer raw(h2::Role::server, c.response);
    auto id = client->submit_request(get(), false);
    REQUIRE(id.ok());
    raw.exchange(*client);
    CHECK(cr.stream_errors == std::vector<std::pair<int32_t, std::string>>{{1, "http2: stream 1: " + c.error}});
    CHECK(cr.streams[*id].closed == h2::error_code::protocol_error);
    CHECK(cr.streams[*id].responses.empty());
    CHECK(client->stats().malformed_streams == 1);
  }
}

TEST_CASE("a peer that floods the connection with PINGs is cut off") {
  Recorder sr;
  auto server = make(config(h2::Role::server), sr);
  std::string bytes(NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
  bytes += std::string("\0\0\0\x04\0\0\0\0\0", 9);
  for (int i = 0; i < 2000; ++i) bytes += std::string("\0\0\x08\x06\0\0\0\0\0", 9) + "pingping";
  Status s = server->receive(bytes.data(), bytes.size());
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message == "http2: flood: the peer sends frames needing replies faster than it reads them");
  CHECK(s.error().code == int(h2::error_code::enhance_your_calm));
  CHECK(server->is_closed());
}

TEST_CASE("a stream reusing a closed stream's storage starts afresh") {
  Recorder cr, sr;
  sr.auto_consume = false;
  auto client = make(config(h2::Role::client), cr);
  h2::SessionConfig sc = config(h2::Role::server);
  sc.initial_stream_window = 16384;
  auto server = make(sc, sr);
  int first_state = 1;
  sr.on_request = [&](int32_t id, bool) { require_ok(server->set_stream_user_data(id, &first_state)); };
  auto first = client->submit_request(post(), true, &first_state);
  REQUIRE(first.ok());
  require_ok(client->send_data(*first, std::string(50000, 'x'), false));
  pump(*client, *server);
  require_ok(client->reset_stream(*first, h2::error_code::cancel));
  pump(*client, *server);
  REQUIRE(cr.streams[*first].closed == h2::error_code::cancel);
  REQUIRE(sr.streams[*first].closed == h2::error_code::cancel);

  // Same size of request, so both sides reuse the closed stream's objects.
  sr.auto_consume = true;
  sr.on_request = [&](int32_t id, bool) {
    CHECK(server->stream_user_data(id) == nullptr);
    require_ok(server->submit_response(id, status(200), true));
    require_ok(server->send_data(id, "fresh", true));
  };
  auto second = client->submit_request(post(), true);
  REQUIRE(second.ok());
  CHECK(client->stream_user_data(*second) == nullptr);
  CHECK(client->queued_bytes(*second) == 0);
  require_ok(client->send_data(*second, "body", true));
  pump(*client, *server);
  CHECK(sr.streams[*second].body == "body");
  CHECK(sr.streams[*second].closed == h2::error_code::no_error);
  CHECK(cr.streams[*second].body == "fresh");
  CHECK(cr.streams[*second].ends == 1);
  CHECK(cr.streams[*second].closed == h2::error_code::no_error);
  CHECK(client->queued_bytes() == 0);
  CHECK(server->queued_bytes() == 0);
}

TEST_CASE("after the first requests, nghttp2 allocates from the session's cache, which idles small") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  // A server's nghttp2 keeps up to max_concurrent_streams closed streams (for
  // RFC 7540 priorities) before it frees any: a small limit reaches the
  // steady state sooner.
  h2::SessionConfig sc = config(h2::Role::server);
  sc.max_concurrent_streams = 4;
  auto server = make(sc, sr);
  sr.on_request = [&](int32_t id, bool) {
    http::ResponseHead head = status(200);
    head.headers.add("content-type", "text/plain");
    require_ok(server->submit_response(id, head, true));
    require_ok(server->send_data(id, "hello", true));
  };
  auto exchange = [&] {
    http::RequestHead head = get("/items?id=42");
    head.headers.add("user-agent", "doctest");
    auto id = client->submit_request(head, false);
    REQUIRE(id.ok());
    pump(*client, *server);
    CHECK(cr.streams[*id].closed == h2::error_code::no_error);
  };
  for (int i = 0; i < 8; ++i) exchange();
  uint64_t client_heap = client->nghttp2_memory().heap_allocations;
  uint64_t server_heap = server->nghttp2_memory().heap_allocations;
  uint64_t client_all = client->nghttp2_memory().allocations;
  for (int i = 0; i < 50; ++i) exchange();
  CHECK(client->nghttp2_memory().heap_allocations == client_heap);
  CHECK(server->nghttp2_memory().heap_allocations == server_heap);
  CHECK(client->nghttp2_memory().allocations > client_all + 50);  // the cache served them
  // No stream open: each session keeps at most 4 KiB of freed blocks.
  CHECK(client->nghttp2_memory().cached_bytes > 0);
  CHECK(client->nghttp2_memory().cached_bytes <= 4096);
  CHECK(server->nghttp2_memory().cached_bytes <= 4096);
}

TEST_CASE("a session keeps what its largest burst of streams needed between bursts") {
  Recorder cr, sr;
  auto client = make(config(h2::Role::client), cr);
  h2::SessionConfig sc = config(h2::Role::server);
  sc.max_concurrent_streams = 10;  // nghttp2's kept closed streams: see the case above
  auto server = make(sc, sr);
  sr.on_request = [&](int32_t id, bool) {
    require_ok(server->submit_response(id, status(200), true));
    require_ok(server->send_data(id, "hello", true));
  };
  // Ten requests at a time, as h2load -m10 sends them: every burst ends with
  // no stream open on either side.
  auto burst = [&](size_t streams) {
    std::vector<int32_t> ids;
    for (size_t i = 0; i < streams; ++i) {
      auto id = client->submit_request(get("/items"), false);
      REQUIRE(id.ok());
      ids.push_back(*id);
    }
    pump(*client, *server);
    for (int32_t id : ids) CHECK(cr.streams[id].closed == h2::error_code::no_error);
  };
  for (int i = 0; i < 4; ++i) burst(10);
  uint64_t client_heap = client->nghttp2_memory().heap_allocations;
  uint64_t server_heap = server->nghttp2_memory().heap_allocations;
  trellis::testing::start_counting_allocations();
  for (int i = 0; i < 20; ++i) burst(10);
  size_t allocations = trellis::testing::stop_counting_allocations();
  // What stays per request is the strings and field lists of the heads handed
  // to the handlers, and the Recorder's copies: about 6. New streams instead
  // of reused ones would add 4 per stream on each side.
  CHECK(allocations <= 200 * 8);
  CHECK(client->nghttp2_memory().heap_allocations == client_heap);
  CHECK(server->nghttp2_memory().heap_allocations == server_heap);
  CHECK(client->nghttp2_memory().cached_bytes <= 16 * 1024);
  CHECK(server->nghttp2_memory().cached_bytes <= 16 * 1024);
}
