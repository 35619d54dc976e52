// A scripted Transport for the client, informer and leader election tests:
// it records every request and stream, and the test answers them in order.
// Answers are delivered from the test's own stack (never inside send()), as
// the real transport delivers them from the loop.
#pragma once

#include <doctest/doctest.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common/kube/transport.h"

namespace trellis::kube::testing {

class FakeTransport : public Transport {
 public:
  struct Pending {
    RequestId id;
    HttpRequest request;
    ResponseCallback done;
  };

  struct StreamState {
    HttpRequest request;
    StreamHandler* handler = nullptr;
    bool closed = false;  // the client destroyed the stream
    bool ended = false;   // the test ended it
  };

  RequestId send(HttpRequest request, ResponseCallback done) override {
    RequestId id = next_id_++;
    requests.push_back(request);
    pending.push_back(Pending{id, std::move(request), std::move(done)});
    return id;
  }

  void cancel(RequestId id) override {
    cancelled.push_back(id);
    for (auto it = pending.begin(); it != pending.end(); ++it) {
      if (it->id == id) {
        pending.erase(it);
        return;
      }
    }
  }

  std::unique_ptr<Stream> open_stream(HttpRequest request, StreamHandler& handler) override {
    auto state = std::make_shared<StreamState>();
    state->request = std::move(request);
    state->handler = &handler;
    streams.push_back(state);
    return std::make_unique<FakeStream>(state);
  }

  // The oldest unanswered request.
  const HttpRequest& next() const {
    REQUIRE_FALSE(pending.empty());
    return pending.front().request;
  }

  void respond(int status, std::string body) {
    REQUIRE_FALSE(pending.empty());
    Pending p = std::move(pending.front());
    pending.pop_front();
    p.done(HttpResponse{status, std::move(body)});
  }

  void fail(std::string message) {
    REQUIRE_FALSE(pending.empty());
    Pending p = std::move(pending.front());
    pending.pop_front();
    p.done(make_error(std::move(message), 0));
  }

  // The newest stream, which must still be open.
  StreamState& stream() {
    REQUIRE_FALSE(streams.empty());
    REQUIRE_FALSE(streams.back()->closed);
    return *streams.back();
  }
  size_t open_streams() const {
    size_t n = 0;
    for (const auto& s : streams) n += (!s->closed && !s->ended) ? 1 : 0;
    return n;
  }

  void stream_open() { stream().handler->on_open(); }
  void stream_data(std::string_view bytes) { stream().handler->on_data(bytes); }
  void stream_end(Status status) {
    StreamState& s = stream();
    s.ended = true;
    s.handler->on_end(status);
  }

  std::deque<Pending> pending;
  std::vector<HttpRequest> requests;  // every request sent, in order
  std::vector<RequestId> cancelled;
  std::vector<std::shared_ptr<StreamState>> streams;

 private:
  class FakeStream : public Stream {
   public:
    explicit FakeStream(std::shared_ptr<StreamState> state) : state_(std::move(state)) {}
    ~FakeStream() override { state_->closed = true; }

   private:
    std::shared_ptr<StreamState> state_;
  };

  RequestId next_id_ = 1;
};

}  // namespace trellis::kube::testing
