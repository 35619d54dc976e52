#include "common/http1/syntax.h"

#include <doctest/doctest.h>

#include <string>

using trellis::http1::is_authority;
using trellis::http1::is_field_value;
using trellis::http1::is_token;

TEST_CASE("is_field_value refuses every control but HTAB, at every position") {
  auto allowed = [](int c) { return c == '\t' || (c >= 0x20 && c != 0x7f); };
  // Lengths and offsets on both sides of the 8-byte steps of the word-wise scan.
  for (size_t n : {1, 7, 8, 9, 16, 17}) {
    for (size_t at = 0; at < n; ++at) {
      for (int c = 0; c < 256; ++c) {
        std::string v(n, 'a');
        v[at] = static_cast<char>(c);
        if (is_field_value(v) != allowed(c)) FAIL("byte " << c << " at " << at << " of " << n);
      }
    }
  }
  CHECK(is_field_value(""));
  CHECK(is_field_value("Fri, 27 Nov 2026 14:00:00 GMT\t\x80\xff"));
}

TEST_CASE("is_token accepts tchars only") {
  CHECK(is_token("Content-Type"));
  CHECK(is_token("!#$%&'*+-.^_`|~09azAZ"));
  CHECK_FALSE(is_token(""));
  CHECK_FALSE(is_token("a b"));
  CHECK_FALSE(is_token("a:b"));
  CHECK_FALSE(is_token("a\x80"));
}

TEST_CASE("is_authority: reg-name, IPv4 or IPv6 literal, optional port") {
  CHECK(is_authority("10.96.0.10"));
  CHECK(is_authority("a.example:8080"));
  CHECK(is_authority("a-b_c~d!$&'()*+,;=%41"));
  CHECK(is_authority("[::1]:443"));
  CHECK_FALSE(is_authority("a^b"));
  CHECK_FALSE(is_authority("a|b"));
  CHECK_FALSE(is_authority("a`b"));
  CHECK_FALSE(is_authority("a#b"));
  CHECK_FALSE(is_authority("u@a"));
  CHECK_FALSE(is_authority("a/b"));
  CHECK_FALSE(is_authority("a\xc3\xa9"));
  CHECK_FALSE(is_authority("a:123456"));
  CHECK_FALSE(is_authority("a:"));
  CHECK_FALSE(is_authority(":80"));
}
