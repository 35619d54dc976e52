#include "common/kube/yaml.h"

#include <charconv>
#include <cstdint>
#include <set>
#include <vector>

#include "common/json/json.h"

namespace trellis::kube {

namespace {

constexpr size_t kMaxDepth = 32;
constexpr std::string_view kUnterminated =
    "unterminated quoted string (multi-line scalars are not supported)";

struct Line {
  size_t number;  // 1-based, for errors
  size_t indent;
  std::string_view content;  // without indentation and trailing blanks
};

Error line_error(size_t number, std::string_view message) {
  return make_error("line " + std::to_string(number) + ": " + std::string(message));
}

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim_right(std::string_view s) {
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view trim_left(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  return s;
}

// "-" alone or "- ...": a block sequence entry.
bool is_sequence_entry(std::string_view content) {
  return content == "-" || (content.size() >= 2 && content[0] == '-' && is_blank(content[1]));
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// One scalar as written on a line: its text and whether it was quoted.
struct Scalar {
  std::string text;
  bool quoted = false;
};

class Parser {
 public:
  explicit Parser(std::vector<Line> lines) : lines_(std::move(lines)) {}

  Result<std::string> run() {
    if (lines_.empty()) {
      writer_.null();
      return writer_.str();
    }
    if (lines_[0].indent != 0) return line_error(lines_[0].number, "unexpected indentation");
    if (auto s = block(0, 1); !s.ok()) return std::move(s).error();
    if (pos_ < lines_.size()) return line_error(lines_[pos_].number, "unexpected content");
    return writer_.str();
  }

 private:
  const Line& line() const { return lines_[pos_]; }
  bool more() const { return pos_ < lines_.size(); }

  // The node that starts at the current line, whose indentation is `indent`.
  Status block(size_t indent, size_t depth) {
    if (depth > kMaxDepth) {
      return line_error(line().number, "nesting deeper than " + std::to_string(kMaxDepth) +
                                           " levels");
    }
    if (is_sequence_entry(line().content)) return sequence(indent, depth);
    size_t colon = 0;
    auto key = mapping_key(line(), colon);
    if (!key.ok()) return std::move(key).error();
    if (colon != std::string_view::npos) return mapping(indent, depth);
    // A scalar alone on its line: only as the whole document or a sequence entry.
    size_t number = line().number;
    if (auto s = value(line().content, number); !s.ok()) return s;
    ++pos_;
    if (more() && line().indent > indent) {
      return line_error(line().number, "multi-line scalars are not supported");
    }
    return ok_status();
  }

  Status sequence(size_t indent, size_t depth) {
    writer_.start_array();
    while (more() && line().indent == indent && is_sequence_entry(line().content)) {
      Line& entry = lines_[pos_];
      std::string_view rest = trim_left(entry.content.substr(1));
      if (rest.empty() || rest[0] == '#') {
        ++pos_;
        if (auto s = nested_or_null(indent, depth); !s.ok()) return s;
        continue;
      }
      // "- key: value" and "- scalar": the rest of the line is a node of its
      // own, indented to where it starts, and later lines may continue it.
      entry.indent += entry.content.size() - rest.size();
      entry.content = rest;
      if (auto s = block(entry.indent, depth + 1); !s.ok()) return s;
      if (more() && line().indent > indent) return line_error(line().number, "bad indentation");
    }
    if (more() && line().indent > indent) return line_error(line().number, "bad indentation");
    writer_.end_array();
    return ok_status();
  }

  Status mapping(size_t indent, size_t depth) {
    writer_.start_object();
    std::set<std::string> keys;
    while (more() && line().indent == indent) {
      const Line& entry = line();
      if (is_sequence_entry(entry.content)) {
        return line_error(entry.number, "expected a mapping key, got a sequence entry");
      }
      size_t colon = 0;
      auto key = mapping_key(entry, colon);
      if (!key.ok()) return std::move(key).error();
      if (colon == std::string_view::npos) {
        return line_error(entry.number, "expected 'key: value'");
      }
      if (!keys.insert(key->text).second) {
        return line_error(entry.number, "duplicate key '" + key->text + "'");
      }
      writer_.key(key->text);
      std::string_view rest = trim_left(entry.content.substr(colon + 1));
      size_t number = entry.number;
      ++pos_;
      if (rest.empty() || rest[0] == '#') {
        // A sequence may sit at its key's own indentation (kubectl writes that).
        if (more() && line().indent == indent && is_sequence_entry(line().content)) {
          if (auto s = sequence(indent, depth + 1); !s.ok()) return s;
        } else if (auto s = nested_or_null(indent, depth); !s.ok()) {
          return s;
        }
      } else {
        if (auto s = value(rest, number); !s.ok()) return s;
        if (more() && line().indent > indent) {
          return line_error(line().number, "multi-line scalars are not supported");
        }
      }
    }
    if (more() && line().indent > indent) return line_error(line().number, "bad indentation");
    writer_.end_object();
    return ok_status();
  }

  // After "key:" or "-" with nothing else: a more indented block, or null.
  Status nested_or_null(size_t indent, size_t depth) {
    if (more() && line().indent > indent) return block(line().indent, depth + 1);
    writer_.null();
    return ok_status();
  }

  // Finds the key of a "key: value" line. `colon` is the position of the ':'
  // in the content, or npos when the line holds no mapping entry.
  Result<Scalar> mapping_key(const Line& l, size_t& colon) {
    std::string_view c = l.content;
    colon = std::string_view::npos;
    if (c[0] == '"' || c[0] == '\'') {
      size_t end = 0;
      auto key = quoted(c, l.number, end);
      if (!key.ok()) return key;
      std::string_view after = trim_left(c.substr(end));
      if (!after.empty() && after[0] == ':' && (after.size() == 1 || is_blank(after[1]))) {
        colon = c.size() - after.size();
      }
      return key;
    }
    if (c[0] == '?' && (c.size() == 1 || is_blank(c[1]))) {
      return line_error(l.number, "complex mapping keys are not supported");
    }
    for (size_t i = 0; i < c.size(); ++i) {
      if (c[i] == '#' && i > 0 && is_blank(c[i - 1])) break;  // a comment starts
      if (c[i] == ':' && (i + 1 == c.size() || is_blank(c[i + 1]))) {
        colon = i;
        std::string_view key = trim_right(c.substr(0, i));
        if (key.empty()) return line_error(l.number, "empty mapping key");
        if (auto s = check_plain(key, l.number); !s.ok()) return std::move(s).error();
        return Scalar{std::string(key), false};
      }
    }
    return Scalar{};
  }

  // A quoted scalar at the start of `c`; `end` is set past its closing quote.
  Result<Scalar> quoted(std::string_view c, size_t number, size_t& end) {
    char q = c[0];
    std::string out;
    size_t i = 1;
    for (;;) {
      if (i >= c.size()) {
        return line_error(number, kUnterminated);
      }
      char ch = c[i];
      if (q == '\'') {
        if (ch == '\'') {
          if (i + 1 < c.size() && c[i + 1] == '\'') {
            out += '\'';
            i += 2;
            continue;
          }
          end = i + 1;
          return Scalar{std::move(out), true};
        }
        out += ch;
        ++i;
        continue;
      }
      if (ch == '"') {
        end = i + 1;
        return Scalar{std::move(out), true};
      }
      if (ch != '\\') {
        out += ch;
        ++i;
        continue;
      }
      if (i + 1 >= c.size()) {
        return line_error(number, kUnterminated);
      }
      char e = c[i + 1];
      i += 2;
      size_t hex_digits = 0;
      switch (e) {
        case '0': out += '\0'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 't':
        case '\t': out += '\t'; break;
        case 'n': out += '\n'; break;
        case 'v': out += '\v'; break;
        case 'f': out += '\f'; break;
        case 'r': out += '\r'; break;
        case 'e': out += '\x1b'; break;
        case ' ': out += ' '; break;
        case '"': out += '"'; break;
        case '/': out += '/'; break;
        case '\\': out += '\\'; break;
        case 'x': hex_digits = 2; break;
        case 'u': hex_digits = 4; break;
        case 'U': hex_digits = 8; break;
        default:
          return line_error(number,
                            std::string("unknown escape '\\") + e + "' in double-quoted string");
      }
      if (hex_digits == 0) continue;
      uint32_t cp = 0;
      auto [ptr, ec] = std::from_chars(c.data() + i, c.data() + std::min(c.size(), i + hex_digits),
                                       cp, 16);
      if (ec != std::errc() || ptr != c.data() + i + hex_digits || cp > 0x10FFFF ||
          (cp >= 0xD800 && cp <= 0xDFFF)) {
        return line_error(number, "invalid escape in double-quoted string");
      }
      append_utf8(cp, out);
      i += hex_digits;
    }
  }

  Status check_plain(std::string_view text, size_t number) {
    switch (text[0]) {
      case '&':
      case '*': return line_error(number, "anchors and aliases are not supported");
      case '!': return line_error(number, "tags are not supported");
      case '|':
      case '>': return line_error(number, "block scalars (| and >) are not supported");
      case '{':
      case '[': return line_error(number, "flow collections are not supported (except {} and [])");
      case '%':
      case '@':
      case '`':
      case ',':
      case ']':
      case '}':
        return line_error(number,
                          std::string("a plain scalar cannot start with '") + text[0] + "'");
      default: return ok_status();
    }
  }

  // A value on the same line as its key or sequence dash.
  Status value(std::string_view text, size_t number) {
    if (text[0] == '"' || text[0] == '\'') {
      size_t end = 0;
      auto s = quoted(text, number, end);
      if (!s.ok()) return std::move(s).error();
      std::string_view after = trim_left(text.substr(end));
      if (!after.empty() && after[0] != '#') {
        return line_error(number, "unexpected text after a quoted string");
      }
      writer_.string(s->text);
      return ok_status();
    }
    // Strip a trailing comment: '#' after a blank.
    for (size_t i = 1; i < text.size(); ++i) {
      if (text[i] == '#' && is_blank(text[i - 1])) {
        text = trim_right(text.substr(0, i));
        break;
      }
    }
    if (text == "{}") {
      writer_.start_object().end_object();
      return ok_status();
    }
    if (text == "[]") {
      writer_.start_array().end_array();
      return ok_status();
    }
    if (auto s = check_plain(text, number); !s.ok()) return s;
    if (text.size() >= 2 && text[0] == '-' && text[1] == ' ') {
      return line_error(number, "a sequence entry cannot start here");
    }
    plain(text);
    return ok_status();
  }

  void plain(std::string_view text) {
    if (text == "null" || text == "Null" || text == "NULL" || text == "~") {
      writer_.null();
      return;
    }
    if (text == "true" || text == "True" || text == "TRUE") {
      writer_.boolean(true);
      return;
    }
    if (text == "false" || text == "False" || text == "FALSE") {
      writer_.boolean(false);
      return;
    }
    std::string_view digits = text;
    if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) digits.remove_prefix(1);
    bool integer = !digits.empty();
    for (char c : digits) integer = integer && c >= '0' && c <= '9';
    if (integer) {
      int64_t n = 0;
      std::string_view signless = text[0] == '+' ? text.substr(1) : text;
      auto [ptr, ec] = std::from_chars(signless.data(), signless.data() + signless.size(), n);
      if (ec == std::errc() && ptr == signless.data() + signless.size()) {
        writer_.integer(n);
        return;
      }
    }
    writer_.string(text);
  }

  std::vector<Line> lines_;
  size_t pos_ = 0;
  json::Writer writer_;
};

}  // namespace

Result<std::string> yaml_to_json(std::string_view yaml) {
  std::vector<Line> lines;
  bool seen_content = false;
  bool seen_marker = false;
  size_t number = 0;
  while (!yaml.empty()) {
    size_t nl = yaml.find('\n');
    std::string_view raw = yaml.substr(0, nl);
    yaml.remove_prefix(nl == std::string_view::npos ? yaml.size() : nl + 1);
    ++number;
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    size_t indent = 0;
    while (indent < raw.size() && raw[indent] == ' ') ++indent;
    std::string_view content = trim_right(raw.substr(indent));
    if (!content.empty() && content[0] == '\t') {
      std::string_view after_tabs = trim_left(content);
      if (!after_tabs.empty() && after_tabs[0] != '#') {
        return line_error(number, "tabs are not allowed in indentation");
      }
      continue;
    }
    if (content.empty() || content[0] == '#') continue;
    if (indent == 0 && content.substr(0, 3) == "---" &&
        (content.size() == 3 || is_blank(content[3]))) {
      if (seen_content || seen_marker) {
        return line_error(number, "several documents are not supported");
      }
      std::string_view after = trim_left(content.substr(3));
      if (!after.empty() && after[0] != '#') {
        return line_error(number, "content after '---' is not supported");
      }
      seen_marker = true;
      continue;
    }
    if (indent == 0 && content == "...") break;
    if (indent == 0 && content[0] == '%') return line_error(number, "directives are not supported");
    for (char c : content) {
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
        return line_error(number, "control characters are not allowed");
      }
    }
    seen_content = true;
    lines.push_back(Line{number, indent, content});
  }
  return Parser(std::move(lines)).run();
}

}  // namespace trellis::kube
