#include "mesh-controller/resolve/table.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cassert>

#include "common/json/json.h"

namespace trellis::controller::resolve {
namespace {

// What routes::serialize writes around the services and endpoints of a table
// with version "0" and namespace "x". The route table's field order is part of
// its contract (parse(serialize(t)) == t is tested on both sides), and
// Table::json() is tested to equal routes::serialize of its model.
constexpr std::string_view kServicesHead = R"({"version":"0","namespace":"x","services":[)";
constexpr std::string_view kServicesTail = R"(],"endpoints":[]})";
constexpr std::string_view kEndpointsHead =
    R"({"version":"0","namespace":"x","services":[],"endpoints":[)";
constexpr std::string_view kEndpointsTail = "]}";

constexpr std::string_view kComma = ",";
constexpr std::string_view kMiddle = R"(],"endpoints":[)";
constexpr std::string_view kEnd = "]}";

constexpr size_t kVersionBytes = 16;  // 128 bits, as 32 hex digits

std::string between(std::string_view text, std::string_view head, std::string_view tail) {
  assert(text.size() >= head.size() + tail.size() && text.substr(0, head.size()) == head &&
         text.substr(text.size() - tail.size()) == tail);
  return std::string(text.substr(head.size(), text.size() - head.size() - tail.size()));
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto b = static_cast<unsigned char>(c);
    out += kDigits[b >> 4];
    out += kDigits[b & 0xF];
  }
  return out;
}

// Appends `text` to a comma-separated list; empty text is no element.
void append_element(std::string& list, std::string_view text) {
  if (text.empty()) return;
  if (!list.empty()) list += kComma;
  list += text;
}

}  // namespace

std::string sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

std::string service_json(const routes::Service& service) {
  routes::RouteTable t;
  t.version = "0";
  t.ns = "x";
  t.services.push_back(service);
  return between(routes::serialize(t), kServicesHead, kServicesTail);
}

std::string endpoints_json(const std::vector<routes::Endpoints>& endpoints) {
  routes::RouteTable t;
  t.version = "0";
  t.ns = "x";
  t.endpoints = endpoints;
  return between(routes::serialize(t), kEndpointsHead, kEndpointsTail);
}

Snapshot::Snapshot(std::vector<std::shared_ptr<const ServiceEntry>> entries)
    : entries_(std::move(entries)) {
  std::string digests;
  digests.reserve(entries_.size() * SHA256_DIGEST_LENGTH);
  for (const auto& e : entries_) digests += e->digest;
  digest_ = sha256(digests);
  blocks_.resize((entries_.size() + kBlockEntries - 1) / kBlockEntries);
  for (size_t i = 0; i < entries_.size(); ++i) {
    const ServiceEntry& e = *entries_[i];
    Block& block = blocks_[i / kBlockEntries];
    if (e.listed) append_element(block.services, e.service_json);
    append_element(block.endpoints, e.endpoints_json);
  }
}

size_t Snapshot::find(std::string_view key) const {
  auto it = std::lower_bound(
      entries_.begin(), entries_.end(), key,
      [](const std::shared_ptr<const ServiceEntry>& e, std::string_view k) { return e->key < k; });
  return it != entries_.end() && (*it)->key == key ? static_cast<size_t>(it - entries_.begin())
                                                   : entries_.size();
}

Table::Table(std::string ns, std::shared_ptr<const Snapshot> snapshot,
             std::vector<std::pair<size_t, std::string>> overrides)
    : ns_(std::move(ns)), snapshot_(std::move(snapshot)), overrides_(std::move(overrides)) {
  // The snapshot's digest covers every Service as every namespace sees it; the
  // namespace and its overrides are the rest of the content.
  std::string content = snapshot_->digest();
  content += ns_;
  for (const auto& [index, text] : overrides_) {
    content += '\0';
    content += std::to_string(index);
    content += '\0';
    content += text;
  }
  version_ = hex(sha256(content).substr(0, kVersionBytes));
  head_ = R"({"version":)" + json::quote(version_) + R"(,"namespace":)" + json::quote(ns_) +
          R"(,"services":[)";
}

std::vector<std::string_view> Table::chunks() const {
  const auto& entries = snapshot_->entries();
  const auto& blocks = snapshot_->blocks();
  std::vector<std::string_view> out;
  out.reserve(blocks.size() * 4 + overrides_.size() * 2 * Snapshot::kBlockEntries + 3);
  bool first = true;
  auto element = [&](std::string_view text) {
    if (text.empty()) return;
    if (!first) out.push_back(kComma);
    out.push_back(text);
    first = false;
  };
  out.push_back(head_);
  auto next_override = overrides_.begin();
  for (size_t b = 0; b < blocks.size(); ++b) {
    const size_t begin = b * Snapshot::kBlockEntries;
    const size_t end = std::min(begin + Snapshot::kBlockEntries, entries.size());
    if (next_override == overrides_.end() || next_override->first >= end) {
      element(blocks[b].services);
      continue;
    }
    for (size_t i = begin; i < end; ++i) {
      const ServiceEntry& e = *entries[i];
      std::string_view text = e.service_json;
      if (next_override != overrides_.end() && next_override->first == i) {
        text = next_override->second;
        ++next_override;
      }
      if (e.listed) element(text);
    }
  }
  out.push_back(kMiddle);
  first = true;
  for (const Snapshot::Block& block : blocks) element(block.endpoints);
  out.push_back(kEnd);
  return out;
}

std::string Table::json() const {
  std::vector<std::string_view> pieces = chunks();
  size_t size = 0;
  for (std::string_view p : pieces) size += p.size();
  std::string out;
  out.reserve(size);
  for (std::string_view p : pieces) out += p;
  return out;
}

Result<std::shared_ptr<const routes::RouteTable>> Table::model() const {
  return routes::parse(json());
}

}  // namespace trellis::controller::resolve
