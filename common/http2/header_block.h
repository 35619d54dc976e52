// Encoding of message heads into nghttp2 header lists (internal to the
// http2 module). HTTP/2 rules applied here, RFC 9113 §8.2 and §8.3:
//   - names are lowercased; pseudo-header fields come first and only from the
//     head's fields (a ':name' in a HeaderMap is an error);
//   - connection-specific fields (Connection and every field it names,
//     Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade) are dropped, and
//     TE survives only as "te: trailers";
//   - a Host header becomes :authority when the head has none, and is never
//     sent as a regular field;
//   - values lose leading and trailing whitespace (not part of a field value,
//     RFC 9110 §5.5); a value with CR, LF, NUL or another control character is
//     an error.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "common/http/message.h"

namespace trellis::http2 {

// A field name or value as it can safely appear in an error message: at most
// 64 bytes, anything but printable ASCII (and the quote) replaced by '?'.
std::string printable(std::string_view s);

// Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade.
bool is_connection_specific(std::string_view name);

// Field size as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113 §6.5.2).
inline size_t header_field_size(size_t name_len, size_t value_len) {
  return name_len + value_len + 32;
}

// Owns the lowercased names and the status digits that its nghttp2_nv entries
// point to; values point into the encoded head, which must outlive the block.
// Neither copyable nor movable, because entries point into the block itself.
// Reusable: encoding again keeps the storage (up to a bound), so a session
// encodes every head into one block without allocating.
class HeaderBlock {
 public:
  HeaderBlock() = default;
  HeaderBlock(const HeaderBlock&) = delete;
  HeaderBlock& operator=(const HeaderBlock&) = delete;

  Status encode_request(const http::RequestHead& head);
  Status encode_response(const http::ResponseHead& head);
  Status encode_trailers(const http::HeaderMap& trailers);

  const nghttp2_nv* fields() const { return fields_.data(); }
  size_t size() const { return fields_.size(); }
  // Sum of header_field_size over every field, pseudo-header fields included.
  size_t list_size() const { return list_size_; }

 private:
  enum class Kind { request, response, trailers };

  void reset(const http::HeaderMap& headers);
  void add(std::string_view name, std::string_view value);
  Status add_regular(const http::HeaderMap& headers, Kind kind);

  std::string names_;     // reserved up front: entries point into it
  char status_[3] = {};
  std::vector<nghttp2_nv> fields_;
  std::vector<std::string_view> named_by_connection_;  // fields the Connection header names
  size_t list_size_ = 0;
};

}  // namespace trellis::http2
