// ConnectionManager: the per-worker owner of downstream server connections.
// It starts each connection it is given, deletes it (on the next loop turn)
// once it has closed, and drains them all for shutdown.
//
//   manager.add(std::move(http1_connection), std::move(detection.bytes), detection.eof);
//   ...                      // SIGTERM: listeners stop accepting, then
//   manager.drain();         // every connection finishes what it has, then closes
//   manager.close_all();     // at the drain deadline: what is left is cut
//
// Loop thread only.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/event/event_loop.h"
#include "proxy/downstream/server_connection.h"

namespace trellis::proxy::downstream {

class ConnectionManager {
 public:
  explicit ConnectionManager(event::EventLoop& loop) : loop_(loop) {}
  // Destroys the connections still open (their exchanges see on_downstream_reset).
  ~ConnectionManager() = default;
  ConnectionManager(const ConnectionManager&) = delete;
  ConnectionManager& operator=(const ConnectionManager&) = delete;

  // Takes ownership and starts the connection with `replay`; once drain()
  // was called, a new connection is drained at once.
  void add(std::unique_ptr<ServerConnection> connection, std::string replay, bool peer_eof);
  // Drains every connection, and every one added from now on.
  void drain();
  // Destroys every connection now. Not from inside a connection's callback.
  void close_all();

  size_t size() const { return connections_.size(); }
  bool draining() const { return draining_; }
  // Called when the last connection is removed after drain(); it runs inside
  // that connection's callback, so it must not destroy the manager
  // synchronously (use EventLoop::delete_later or defer).
  void set_drained_callback(std::function<void()> callback) { on_drained_ = std::move(callback); }

 private:
  void on_closed(ServerConnection& connection);

  event::EventLoop& loop_;
  std::unordered_map<ServerConnection*, std::unique_ptr<ServerConnection>> connections_;
  bool draining_ = false;
  std::function<void()> on_drained_;
};

}  // namespace trellis::proxy::downstream
