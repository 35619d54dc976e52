#include "proxy/downstream/connection_manager.h"

#include <utility>
#include <vector>

namespace trellis::proxy::downstream {

void ConnectionManager::add(std::unique_ptr<ServerConnection> connection, std::string replay,
                            bool peer_eof) {
  ServerConnection* raw = connection.get();
  raw->set_closed_callback([this](ServerConnection& c) { on_closed(c); });
  connections_.emplace(raw, std::move(connection));
  // A connection never reports closed from inside start() or drain(): both
  // finish their closing on a later callback.
  raw->start(std::move(replay), peer_eof);
  if (draining_) raw->drain();
}

void ConnectionManager::drain() {
  if (draining_) return;
  draining_ = true;
  std::vector<ServerConnection*> all;
  all.reserve(connections_.size());
  for (const auto& entry : connections_) all.push_back(entry.first);
  for (ServerConnection* c : all) c->drain();
  if (connections_.empty() && on_drained_) on_drained_();
}

void ConnectionManager::close_all() {
  auto doomed = std::move(connections_);
  connections_.clear();
  doomed.clear();
}

void ConnectionManager::on_closed(ServerConnection& connection) {
  auto it = connections_.find(&connection);
  if (it == connections_.end()) return;
  // Still on the connection's stack: it dies on the next loop turn.
  loop_.delete_later(std::move(it->second));
  connections_.erase(it);
  if (draining_ && connections_.empty() && on_drained_) on_drained_();
}

}  // namespace trellis::proxy::downstream
