// The echo client: sends `count` requests to one URL and prints what the
// Istio echo client prints (gamma-conformance.md §2.3), so that the
// conformance suite's parser and our tests read it the same way:
//
//   [0] Url=http://echo/v2
//   [0] Header=Version:two
//   [0] StatusCode=200                      (HTTP only; gRPC has it in the body)
//   [0] ResponseHeader=Content-Type:application/text
//   [0 body] ServiceVersion=
//   ...                                      (a blank line ends each block)
//
// Transports: HTTP/1.1 opens a new connection per request (Istio's client
// disables keep-alive); --http2 and gRPC share one h2c connection for the
// whole batch (reconnecting if it dies), so a proxy must balance per request;
// TCP opens one connection per request. At most `concurrency` requests are in
// flight, `qps` paces their starts and `timeout` bounds the whole batch.
//
// Threading: a Client lives on one loop's thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/base/result.h"
#include "common/event/event_loop.h"
#include "common/event/timer.h"
#include "common/net/address.h"
#include "tests/support/echo/options.h"

namespace trellis::support::echo {

struct ClientResult {
  std::string out;    // stdout: one block per successful request, in request order; then the summary
  std::string err;    // stderr: "[3 error] <why>" per failed request (the first 20), then a count
  int exit_code = 0;  // 0 when every request succeeded, else 1
};

// getaddrinfo (blocking; reads /etc/hosts): the first address of `host`.
// Error: "resolve 'nohost.invalid': Name or service not known".
Result<net::Address> resolve(const std::string& host, uint16_t port);

class Client {
 public:
  using Done = std::function<void(ClientResult)>;

  // Resolves the dial address (blocking), then runs the batch on `loop`.
  // `done` runs once, on a later loop turn; the Client may be destroyed from
  // inside it. Errors: an invalid URL or --connect-to, a failed resolution.
  static Result<std::unique_ptr<Client>> start(event::EventLoop& loop, const ClientOptions& options, Done done);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  class Exchange;   // one request on its own connection (HTTP/1, TCP)
  class H2Channel;  // the shared h2c connection (--http2, gRPC)

 private:
  struct Slot {
    bool done = false;
    std::string output;                // the block, without the blank line
    std::optional<std::string> error;  // why it failed
    std::string hostname;              // Hostname= from the body
    std::string code;                  // StatusCode (HTTP) or StatusCode= from a gRPC body
  };

  Client(event::EventLoop& loop, const ClientOptions& options, const Url& url, const net::Address& dial,
         Done done);
  void pump();
  void start_request(size_t index);
  // Each request ends exactly once, in one of these.
  void succeed(size_t index, std::string output, std::string hostname, std::string code);
  void fail(size_t index, std::string error);
  void end_request(size_t index);
  void on_deadline();
  void finish();
  // Drops the shared connection after it failed; the next request opens another.
  void drop_channel(H2Channel* channel);
  std::chrono::milliseconds remaining() const;
  // "[i] Url=...", "[i] Header=..." lines that start every block.
  std::string block_head(size_t index) const;

  event::EventLoop& loop_;
  ClientOptions options_;
  Url url_;
  net::Address dial_;
  std::string authority_;                                    // Host / :authority
  std::vector<std::pair<std::string, std::string>> headers_;  // -H without Host
  Done done_;
  std::vector<Slot> slots_;
  size_t next_ = 0;
  size_t in_flight_ = 0;
  size_t ended_ = 0;
  bool over_ = false;
  bool pumping_ = false;
  std::chrono::milliseconds started_at_{0};
  event::Timer deadline_;
  event::Timer pace_;
  std::unordered_map<size_t, std::unique_ptr<Exchange>> exchanges_;
  std::unique_ptr<H2Channel> channel_;
};

// What `trellis-echo client` runs: the batch on a private loop.
ClientResult run_client(const ClientOptions& options);

}  // namespace trellis::support::echo
