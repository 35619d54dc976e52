// UTF-8 validity for text we emit as JSON (logs, API bodies): peer-controlled
// bytes (header values, paths) must not make a document invalid.
#pragma once

#include <string>
#include <string_view>

namespace trellis {

// `in` itself when it is valid UTF-8; otherwise a copy in `scratch` with every
// invalid byte replaced by U+FFFD, and a view of that.
inline std::string_view valid_utf8(std::string_view in, std::string& scratch) {
  size_t i = 0;
  bool valid = true;
  while (i < in.size()) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len != 0 && i + len <= in.size() && c != 0xC0 && c != 0xC1 && c <= 0xF4;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(in[i + k]) & 0xC0) == 0x80;
    }
    if (!ok) {
      if (valid) {
        scratch.assign(in.data(), i);
        valid = false;
      }
      scratch += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    if (!valid) scratch.append(in.data() + i, len);
    i += len;
  }
  return valid ? in : std::string_view(scratch);
}

}  // namespace trellis
