// HTTP/1.1 encoders: append message heads and chunk framing to a caller-owned
// std::string (reuse one per connection so its capacity is kept). Free
// functions, no state, safe from any thread.
//
// Every name, value, method, target, authority and reason is validated: a
// CR, LF, NUL or other control character, or a non-token name, fails the call
// with `out` unchanged, so response splitting and header injection cannot
// happen through the encoder. Error codes are 500 (our own message is bad).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/http/message.h"
#include "common/http1/decoder.h"

namespace trellis::http1 {

// How the body after a head is delimited. The encoder owns the framing
// fields: Content-Length and Transfer-Encoding in the head's headers are
// never written; these are, from the framing alone, so the head cannot
// disagree with the body that follows.
struct Framing {
  enum class Kind {
    none,            // no framing field: no body (or a 1xx/204/304)
    content_length,  // "Content-Length: length" (for HEAD/304 responses: the
                     // representation's length, and no body follows)
    chunked,         // "Transfer-Encoding: chunked" (HTTP/1.1 only)
    close_delimited, // response only: no framing field, "Connection: close"
  };
  Kind kind = Kind::none;
  uint64_t length = 0;

  static Framing no_body() { return Framing{}; }
  static Framing content_length(uint64_t n) { return Framing{Kind::content_length, n}; }
  static Framing chunked() { return Framing{Kind::chunked, 0}; }
  static Framing close_delimited() { return Framing{Kind::close_delimited, 0}; }
  // The framing a decoded message arrived with, to relay it unchanged.
  static Framing of(const MessageInfo& info);
};

// "METHOD target HTTP/1.x", Host from head.authority (head.headers never
// writes Host), the headers, the framing field, the empty line. The target
// is origin-form or "*"; for CONNECT the authority is the target. An HTTP/2
// head is written as HTTP/1.1.
Status encode_request_head(const http::RequestHead& head, const Framing& framing,
                           std::string& out);

// "HTTP/1.x status reason", the headers, the framing field, the empty line.
// An empty reason writes the standard phrase.
Status encode_response_head(const http::ResponseHead& head, const Framing& framing,
                            std::string& out);

// "HTTP/1.1 100 Continue" with no fields, for an Expect: 100-continue request.
void encode_continue(std::string& out);

// One chunk: size line, data, CRLF. Empty data writes nothing (an empty chunk
// would end the body).
void encode_chunk(std::string_view data, std::string& out);
// The size line alone, for writing the data from its own buffer (writev);
// the data must then be followed by kChunkEnd. size must not be 0.
void encode_chunk_header(uint64_t size, std::string& out);
inline constexpr std::string_view kChunkEnd = "\r\n";
// The last chunk, the trailer fields (may be null or empty) and the empty line.
Status encode_last_chunk(const http::HeaderMap* trailers, std::string& out);

}  // namespace trellis::http1
