#include "bench/controller/table_stream.h"

#include <utility>

namespace trellis::bench::controller {

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
  proxy::app::RouteTableCallOptions options;
  options.ns = ns_;
  options.authority = controller_.to_string();
  options.user_agent = "trellis-bench-controller";
  auto call = proxy::app::RouteTableCall::start(loop_, controller_, std::move(options), *this);
  if (!call.ok()) {
    on_over(call.error().message);
    return;
  }
  attempt_ = std::move(*call);
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

void TableStream::on_over(const std::string& why) {
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
