// The HTTP seam under the Kubernetes client: one exchange (request, whole
// response) or one streamed response (a watch). HttpsTransport is the real
// one; tests script a fake.
//
// Threading and callbacks: one loop thread. A callback never runs inside the
// call that started its exchange; it runs at most once, and never after
// cancel() or the transport's destruction.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace trellis::kube {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, relative to the server URL's base path
  std::string content_type;  // of the body; empty without one
  std::string body;
  // send(): bounds the whole exchange. open_stream(): the longest silence
  // tolerated on the stream. Zero: the transport's default.
  std::chrono::milliseconds timeout{0};
};

struct HttpResponse {
  int status = 0;
  std::string body;
};

using RequestId = uint64_t;

// Receives a streamed response body.
class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  // The server answered 200: body bytes follow.
  virtual void on_open() = 0;
  // Body bytes as they arrive, in any split; valid only during the call.
  virtual void on_data(std::string_view bytes) = 0;
  // The last call. OK when the server ended the body; otherwise the failure:
  // a non-2xx answer (kube::api_error, code = status) or a broken, silent or
  // refused connection (code 0).
  virtual void on_end(const Status& status) = 0;
};

// An open stream; destroying it closes the stream's connection without
// further callbacks (also from inside one of its handler's callbacks).
class Stream {
 public:
  virtual ~Stream() = default;
};

class Transport {
 public:
  using ResponseCallback = std::function<void(Result<HttpResponse> response)>;

  virtual ~Transport() = default;
  // Every answer with a status line is a response, whatever the status;
  // errors mean no answer (code 0): connect, TLS, timeout, broken connection.
  virtual RequestId send(HttpRequest request, ResponseCallback done) = 0;
  // Drops the exchange; its callback will not run. Unknown ids are ignored.
  virtual void cancel(RequestId id) = 0;
  // The handler must outlive the returned Stream.
  virtual std::unique_ptr<Stream> open_stream(HttpRequest request, StreamHandler& handler) = 0;
};

}  // namespace trellis::kube
