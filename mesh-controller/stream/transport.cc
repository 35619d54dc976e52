#include "mesh-controller/stream/transport.h"

namespace trellis::controller::stream {
namespace {

class TcpTransport final : public Transport, private net::TcpConnection::Handler {
 public:
  explicit TcpTransport(std::unique_ptr<net::TcpConnection> connection)
      : connection_(std::move(connection)) {
    auto peer = connection_->peer_address();
    peer_ = peer.ok() ? peer->to_string() : "unknown";
  }

  Status start(Transport::Handler& handler) override {
    handler_ = &handler;
    return connection_->start(*this);
  }
  Status write(std::string_view bytes) override { return connection_->write(bytes); }
  size_t queued_bytes() const override { return connection_->queued_bytes(); }
  void pause_reading() override { connection_->pause_reading(); }
  void resume_reading() override { connection_->resume_reading(); }
  void close() override { connection_->close(); }
  std::optional<std::string> peer_identity() const override { return std::nullopt; }
  std::string peer_address() const override { return peer_; }

 private:
  void on_data(const char* data, size_t length) override {
    handler_->on_transport_data(data, length);
  }
  // An HTTP/2 client that half-closes has nothing more to say; whatever we
  // still owe it would only be refused streams' data.
  void on_eof() override {
    connection_->close();
  }
  void on_error(const Error& error) override { handler_->on_transport_closed(error); }
  void on_write_drained() override { handler_->on_transport_drained(); }
  void on_closed() override { handler_->on_transport_closed(ok_status()); }

  std::unique_ptr<net::TcpConnection> connection_;
  Transport::Handler* handler_ = nullptr;
  std::string peer_;
};

}  // namespace

std::unique_ptr<Transport> tcp_transport(std::unique_ptr<net::TcpConnection> connection) {
  return std::make_unique<TcpTransport>(std::move(connection));
}

}  // namespace trellis::controller::stream
