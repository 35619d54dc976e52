// One simulated sidecar's route-table stream: GET /v1/route-table?namespace=<ns>
// over h2c with prior knowledge (the controller runs with
// --insecure-namespace-from-query), one TCP connection per stream as each
// sidecar has, made by the sidecar's own call (proxy/app/route_table_call.h:
// its receive windows, connect timeout and request; no idle timeout). The
// body goes through a LineScanner instead of the sidecar's parser, so one thread can
// follow hundreds of streams; each table is reported with the time its last
// byte (the newline) arrived.
//
// Until the first 200 the stream redials every retry_delay (the controller may
// not listen yet). A stream that breaks afterwards is reported and redialled.
//
// Threading: the loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "bench/controller/line_scanner.h"
#include "common/event/event_loop.h"
#include "common/event/timer.h"
#include "common/net/address.h"
#include "proxy/app/route_table_call.h"

namespace trellis::bench::controller {

using Clock = std::chrono::steady_clock;

class TableStream final : private proxy::app::RouteTableCall::Handler {
 public:
  class Observer {
   public:
    // A complete table line (line.version empty: it did not start as a table does).
    virtual void on_table(TableStream& stream, const ScannedLine& line, Clock::time_point at) = 0;
    // A stream that had its 200 ended or failed; it redials.
    virtual void on_stream_broken(TableStream& stream, const std::string& why) = 0;

   protected:
    ~Observer() = default;
  };

  TableStream(event::EventLoop& loop, net::Address controller, std::string ns, int index,
              Observer& observer, std::chrono::milliseconds retry_delay);
  ~TableStream();
  TableStream(const TableStream&) = delete;
  TableStream& operator=(const TableStream&) = delete;

  // Dials now.
  void start();
  void set_marker(const std::string& marker) { scanner_.set_marker(marker); }

  int index() const { return index_; }
  const std::string& ns() const { return ns_; }
  // The last table's version ("" before the first).
  const std::string& version() const { return version_; }
  uint64_t tables() const { return tables_; }
  // Bytes of every table so far, without the newlines.
  uint64_t table_bytes() const { return table_bytes_; }
  // Why the last attempt ended ("" if none has).
  const std::string& last_error() const { return last_error_; }

 private:
  void dial();
  // proxy::app::RouteTableCall::Handler, for the current attempt.
  void on_streaming() override;
  void on_body(const char* data, size_t length) override;
  void on_over(const std::string& why) override;

  event::EventLoop& loop_;
  net::Address controller_;
  std::string ns_;
  int index_;
  Observer& observer_;
  std::chrono::milliseconds retry_delay_;
  std::unique_ptr<proxy::app::RouteTableCall> attempt_;
  event::Timer retry_timer_;
  LineScanner scanner_;
  std::string version_;
  std::string last_error_;
  bool streaming_ = false;
  uint64_t tables_ = 0;
  uint64_t table_bytes_ = 0;
};

}  // namespace trellis::bench::controller
