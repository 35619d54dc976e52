#include "proxy/pool/transport.h"

#include <utility>

#include "common/net/tcp_connection.h"

namespace trellis::proxy::pool {
namespace {

class TcpTransport final : public Transport, private net::TcpConnection::Handler {
 public:
  explicit TcpTransport(std::unique_ptr<net::TcpConnection> connection)
      : connection_(std::move(connection)) {}

  Status start(Transport::Handler& handler) override {
    handler_ = &handler;
    return connection_->start(*this);
  }
  void set_handler(Transport::Handler& handler) override { handler_ = &handler; }
  Status write(std::string_view bytes) override { return connection_->write(bytes); }
  void pause_reading() override { connection_->pause_reading(); }
  void resume_reading() override { connection_->resume_reading(); }
  void close() override { connection_->close(); }
  void abort() override { connection_->abort(); }
  size_t queued_bytes() const override { return connection_->queued_bytes(); }

 private:
  // Each forward is the last statement: the handler may destroy this transport.
  void on_data(const char* data, size_t length) override {
    handler_->on_transport_data(data, length);
  }
  void on_eof() override { handler_->on_transport_eof(); }
  void on_error(const Error& error) override { handler_->on_transport_error(error); }
  void on_write_high_water() override { handler_->on_transport_high_water(); }
  void on_write_drained() override { handler_->on_transport_drained(); }
  void on_closed() override { handler_->on_transport_closed(); }

  std::unique_ptr<net::TcpConnection> connection_;
  Transport::Handler* handler_ = nullptr;
};

}  // namespace

TransportFactory tcp_transports() {
  return [](event::EventLoop& loop, const http::UpstreamTarget& target,
            const TransportOptions& options,
            Transport::ConnectCallback done) -> Result<std::unique_ptr<Transport>> {
    net::ConnectionOptions connection_options;
    connection_options.high_water = options.high_water;
    connection_options.low_water = options.low_water;
    auto connection = net::TcpConnection::connect(loop, target.address, options.connect_timeout,
                                                  std::move(done), connection_options);
    if (!connection.ok()) return std::move(connection).error();
    return std::unique_ptr<Transport>(new TcpTransport(std::move(connection).value()));
  };
}

}  // namespace trellis::proxy::pool
