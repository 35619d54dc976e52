// A client namespace's route table as the resolver produces it.
//
// Every table lists every Service of the cluster (frontends and endpoints); only
// the routes differ between namespaces, and only where a namespace has consumer
// routes. So the namespace-independent part (each Service rendered with its
// producer routes, and its endpoints) lives in one immutable Snapshot shared by
// every Table, pre-serialized per Service; a Table adds the few Services its
// namespace re-renders. A Table's JSON is assembled from those pieces and is
// byte-for-byte routes::serialize of the table it describes.
//
// Snapshot and Table are immutable once built: share them freely
// (std::shared_ptr<const ...>) and read them from any thread.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/result.h"
#include "common/routes/route_table.h"

namespace trellis::controller::resolve {

// One Service, rendered: what every namespace's table carries for it.
struct ServiceEntry {
  std::string key;  // "namespace/name"
  // The frontend (clusterIPs, TCP ports) without routes; empty cluster_ips for
  // a headless Service, which is not listed in services[] (it has no frontend)
  // but whose endpoints are, for backendRefs.
  routes::Service frontend;
  bool listed = false;
  std::string service_json;    // services[] element with the producer routes; "" unless listed
  std::string endpoints_json;  // endpoints[] elements, comma-separated; "" when no TCP port
  std::string digest;          // SHA-256 of both
};

class Snapshot {
 public:
  // Entries per Block. A table written per entry is four pieces per Service
  // (two of them commas), and the stream server does one HTTP/2 send_data per
  // piece on every stream: at 10 000 Services that per-piece work was most of
  // the controller's CPU per update (bench/README.md, "Mesh controller at
  // scale"). 64 entries make blocks of about 20 KB.
  static constexpr size_t kBlockEntries = 64;

  // Entries [i * kBlockEntries, (i + 1) * kBlockEntries) of entries(), joined
  // once for every table: the services[] elements of the listed ones and the
  // endpoints[] elements, each comma-separated ("" when there are none). A
  // second copy of the entries' text: 6 MB per live Snapshot at 10 000 Services.
  struct Block {
    std::string services;
    std::string endpoints;
  };

  // `entries` sorted by key.
  explicit Snapshot(std::vector<std::shared_ptr<const ServiceEntry>> entries);

  const std::vector<std::shared_ptr<const ServiceEntry>>& entries() const { return entries_; }
  const std::vector<Block>& blocks() const { return blocks_; }
  const std::string& digest() const { return digest_; }  // of every entry, in order
  // The index of `key` in entries(), or entries().size().
  size_t find(std::string_view key) const;

 private:
  std::vector<std::shared_ptr<const ServiceEntry>> entries_;
  std::vector<Block> blocks_;
  std::string digest_;
};

class Table {
 public:
  // `overrides`: (index into snapshot->entries(), services[] element) for the
  // Services this namespace renders differently (its consumer routes), sorted
  // by index.
  Table(std::string ns, std::shared_ptr<const Snapshot> snapshot,
        std::vector<std::pair<size_t, std::string>> overrides);

  const std::string& ns() const { return ns_; }
  // A content hash: equal tables have equal versions.
  const std::string& version() const { return version_; }

  // The route-table document (docs/route-table.md).
  std::string json() const;
  // The same document as consecutive pieces, for writing it out without
  // building one string: mostly the snapshot's blocks, single entries only
  // in blocks with an override. The views are valid while this Table lives.
  std::vector<std::string_view> chunks() const;
  // The document parsed with the sidecar's parser.
  Result<std::shared_ptr<const routes::RouteTable>> model() const;

 private:
  std::string ns_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<std::pair<size_t, std::string>> overrides_;
  std::string version_;
  std::string head_;  // {"version":...,"namespace":...,"services":[
};

// routes::serialize of a one-Service table, reduced to the services[] element.
std::string service_json(const routes::Service& service);
// routes::serialize of the endpoints entries, reduced to the comma-separated
// endpoints[] elements.
std::string endpoints_json(const std::vector<routes::Endpoints>& endpoints);
// SHA-256 of `data`, raw.
std::string sha256(std::string_view data);

}  // namespace trellis::controller::resolve
