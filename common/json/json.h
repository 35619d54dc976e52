// JSON reading and writing on RapidJSON, for every structured input Trellis
// parses (route tables, config, Kubernetes objects) and what it emits.
//
//   auto doc = json::Document::parse(text, json::Limits{});
//   if (!doc) return doc.error();               // "invalid JSON at offset 12: ..."
//   auto root = doc->root().object();           // Result<json::Object>
//   auto name = root->required_string("name");  // "spec: missing required field 'name'"
//
// Reading is bounded: the input size and the nesting depth are limited, and the
// parser is iterative, so hostile input can neither exhaust memory through the
// size of the text nor overflow the stack. Typed accessors return Results whose
// errors name the value by its path from the root (`services[0].ports[1].port:
// expected an integer between 1 and 65535, got 70000`). Fields a reader does
// not ask for are ignored; an explicit `null` reads as an absent field, as in
// Kubernetes objects; of duplicate keys the first one wins.
//
// Value, Object and Array are small non-owning handles into a Document: cheap
// to copy, valid while the Document lives, safe to read from several threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "common/base/result.h"

namespace trellis::json {

struct Limits {
  size_t max_bytes = size_t{16} << 20;
  // Objects and arrays opened and not yet closed; the root counts as 1.
  size_t max_depth = 64;
};

enum class Type { null, boolean, number, string, array, object };

// "null", "boolean", "number", "string", "array", "object".
std::string_view type_name(Type type);

class Object;
class Array;

class Value {
 public:
  Type type() const;
  bool is_null() const { return v_->IsNull(); }
  bool is_string() const { return v_->IsString(); }
  bool is_number() const { return v_->IsNumber(); }
  bool is_bool() const { return v_->IsBool(); }
  bool is_object() const { return v_->IsObject(); }
  bool is_array() const { return v_->IsArray(); }

  // Each fails with "<path>: expected <what>, got <type or number>".
  Result<std::string_view> string() const;
  Result<bool> boolean() const;
  // Integers only (a JSON number without fraction or exponent that fits in
  // int64), inclusive range: "expected an integer between 1 and 65535, got 70000".
  Result<int64_t> integer(int64_t min = std::numeric_limits<int64_t>::min(),
                          int64_t max = std::numeric_limits<int64_t>::max()) const;
  Result<double> number() const;
  Result<Object> object() const;
  Result<Array> array() const;

  // Path from the root: "services[0].ports[1].port"; "" for the root itself.
  // Found by searching the document, so it costs O(size): call it for errors.
  std::string path() const;
  // "<path>: <message>" ("(root): <message>" for the root).
  Error error(std::string_view message) const;

  // The RapidJSON value, for code that needs more than the accessors.
  const rapidjson::Value& raw() const { return *v_; }

 private:
  friend class Document;
  friend class Object;
  friend class Array;
  Value(const rapidjson::Value* v, const rapidjson::Value* root) : v_(v), root_(root) {}
  Error type_error(std::string_view expected) const;

  const rapidjson::Value* v_;
  const rapidjson::Value* root_;
};

class Object {
 public:
  // The field, or nullopt when it is absent or null.
  std::optional<Value> find(std::string_view key) const;
  // "<path>: missing required field '<key>'" when absent or null.
  Result<Value> required(std::string_view key) const;

  Result<std::string_view> required_string(std::string_view key) const;
  Result<std::optional<std::string_view>> optional_string(std::string_view key) const;
  Result<int64_t> required_integer(std::string_view key, int64_t min, int64_t max) const;
  Result<std::optional<int64_t>> optional_integer(std::string_view key, int64_t min,
                                                  int64_t max) const;
  Result<std::optional<bool>> optional_bool(std::string_view key) const;
  Result<Object> required_object(std::string_view key) const;
  Result<std::optional<Object>> optional_object(std::string_view key) const;
  Result<Array> required_array(std::string_view key) const;
  Result<std::optional<Array>> optional_array(std::string_view key) const;

  size_t size() const { return value_.raw().MemberCount(); }
  // Calls f(std::string_view key, Value value) for every member, in order.
  template <typename F>
  void for_each(F&& f) const {
    for (auto it = value_.raw().MemberBegin(); it != value_.raw().MemberEnd(); ++it) {
      f(std::string_view(it->name.GetString(), it->name.GetStringLength()),
        Value(&it->value, value_.root_));
    }
  }

  const Value& value() const { return value_; }
  Error error(std::string_view message) const { return value_.error(message); }

 private:
  friend class Value;
  explicit Object(Value value) : value_(value) {}
  Value value_;
};

class Array {
 public:
  size_t size() const { return value_.raw().Size(); }
  bool empty() const { return size() == 0; }
  Value operator[](size_t i) const {
    return Value(&value_.raw()[static_cast<rapidjson::SizeType>(i)], value_.root_);
  }

  const Value& value() const { return value_; }
  Error error(std::string_view message) const { return value_.error(message); }

 private:
  friend class Value;
  explicit Array(Value value) : value_(value) {}
  Value value_;
};

// An immutable parsed document. Movable; handles taken from it stay valid
// across moves (the tree lives on the heap).
class Document {
 public:
  // Errors: "JSON document of N bytes exceeds the limit of M bytes",
  // "invalid JSON at offset N: <reason>", where reason is RapidJSON's
  // ("Missing a comma or '}' after an object member.") or
  // "nesting deeper than 64 levels".
  static Result<Document> parse(std::string_view text, const Limits& limits);

  Value root() const { return Value(doc_.get(), doc_.get()); }

 private:
  explicit Document(std::unique_ptr<rapidjson::Document> doc) : doc_(std::move(doc)) {}
  std::unique_ptr<rapidjson::Document> doc_;
};

// Compact JSON output. Keys and strings must be valid UTF-8 (everything read
// through Document is); invalid sequences are replaced by U+FFFD.
class Writer {
 public:
  Writer() : w_(buffer_) {}
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  Writer& start_object();
  Writer& end_object();
  Writer& start_array();
  Writer& end_array();
  Writer& key(std::string_view k);
  Writer& string(std::string_view v);
  Writer& integer(int64_t v);
  Writer& boolean(bool v);
  Writer& null();

  // key + value shorthands (distinct names: a string literal would otherwise
  // convert to bool before string_view).
  Writer& string_field(std::string_view k, std::string_view v) { return key(k).string(v); }
  Writer& integer_field(std::string_view k, int64_t v) { return key(k).integer(v); }
  Writer& bool_field(std::string_view k, bool v) { return key(k).boolean(v); }

  // The text so far; complete once every object and array is closed.
  std::string_view view() const { return {buffer_.GetString(), buffer_.GetSize()}; }
  std::string str() const { return std::string(view()); }

 private:
  rapidjson::StringBuffer buffer_;
  rapidjson::Writer<rapidjson::StringBuffer> w_;
};

// `s` as a JSON string literal, quotes included.
std::string quote(std::string_view s);

}  // namespace trellis::json
