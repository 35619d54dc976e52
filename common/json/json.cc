#include "common/json/json.h"

#include <vector>

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include "common/base/utf8.h"

namespace trellis::json {
namespace {

constexpr unsigned kParseFlags =
    rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;

// Forwards SAX events to the Document being built and stops the parse once
// objects and arrays nest deeper than the limit. With the iterative parser this
// bounds both the stack (none is used per level) and the depth of the tree that
// later code walks.
class DepthLimiter {
 public:
  DepthLimiter(rapidjson::Document& doc, size_t max_depth) : doc_(doc), max_depth_(max_depth) {}

  bool Null() { return doc_.Null(); }
  bool Bool(bool b) { return doc_.Bool(b); }
  bool Int(int i) { return doc_.Int(i); }
  bool Uint(unsigned u) { return doc_.Uint(u); }
  bool Int64(int64_t i) { return doc_.Int64(i); }
  bool Uint64(uint64_t u) { return doc_.Uint64(u); }
  bool Double(double d) { return doc_.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    return doc_.RawNumber(s, n, copy);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) { return doc_.String(s, n, copy); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) { return doc_.Key(s, n, copy); }
  bool StartObject() { return enter() && doc_.StartObject(); }
  bool EndObject(rapidjson::SizeType members) {
    --depth_;
    return doc_.EndObject(members);
  }
  bool StartArray() { return enter() && doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType elements) {
    --depth_;
    return doc_.EndArray(elements);
  }

  bool too_deep() const { return too_deep_; }

 private:
  bool enter() {
    if (++depth_ > max_depth_) {
      too_deep_ = true;
      return false;
    }
    return true;
  }

  rapidjson::Document& doc_;
  size_t max_depth_;
  size_t depth_ = 0;
  bool too_deep_ = false;
};

std::string describe_number(const rapidjson::Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  v.Accept(w);
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string path_of(const rapidjson::Value* root, const rapidjson::Value* target) {
  if (root == target) return std::string();
  // Iterative depth-first search: the tree is bounded by Limits::max_depth,
  // but nothing here should depend on that for its stack.
  struct Frame {
    const rapidjson::Value* node;
    rapidjson::SizeType next;
  };
  std::vector<Frame> stack;
  stack.push_back({root, 0});
  while (!stack.empty()) {
    Frame& top = stack.back();
    const rapidjson::Value& node = *top.node;
    const rapidjson::Value* child = nullptr;
    if (node.IsArray() && top.next < node.Size()) {
      child = &node[top.next];
    } else if (node.IsObject() && top.next < node.MemberCount()) {
      child = &(node.MemberBegin() + top.next)->value;
    }
    if (child == nullptr) {
      stack.pop_back();
      continue;
    }
    ++top.next;
    if (child == target) {
      std::string path;
      for (const Frame& f : stack) {
        rapidjson::SizeType index = f.next - 1;
        if (f.node->IsArray()) {
          path += '[';
          path += std::to_string(index);
          path += ']';
        } else {
          const rapidjson::Value& name = (f.node->MemberBegin() + index)->name;
          if (!path.empty()) path += '.';
          path.append(name.GetString(), name.GetStringLength());
        }
      }
      return path;
    }
    if (child->IsArray() || child->IsObject()) stack.push_back({child, 0});
  }
  return std::string("(unknown)");
}

}  // namespace

std::string_view type_name(Type type) {
  switch (type) {
    case Type::null: return "null";
    case Type::boolean: return "boolean";
    case Type::number: return "number";
    case Type::string: return "string";
    case Type::array: return "array";
    case Type::object: return "object";
  }
  return "null";
}

Type Value::type() const {
  switch (v_->GetType()) {
    case rapidjson::kNullType: return Type::null;
    case rapidjson::kFalseType:
    case rapidjson::kTrueType: return Type::boolean;
    case rapidjson::kNumberType: return Type::number;
    case rapidjson::kStringType: return Type::string;
    case rapidjson::kArrayType: return Type::array;
    case rapidjson::kObjectType: return Type::object;
  }
  return Type::null;
}

std::string Value::path() const { return path_of(root_, v_); }

Error Value::error(std::string_view message) const {
  std::string p = path();
  std::string out = p.empty() ? std::string("(root)") : std::move(p);
  out += ": ";
  out += message;
  return make_error(std::move(out));
}

Error Value::type_error(std::string_view expected) const {
  return error("expected " + std::string(expected) + ", got " + std::string(type_name(type())));
}

Result<std::string_view> Value::string() const {
  if (!v_->IsString()) return type_error("a string");
  return std::string_view(v_->GetString(), v_->GetStringLength());
}

Result<bool> Value::boolean() const {
  if (!v_->IsBool()) return type_error("a boolean");
  return v_->GetBool();
}

Result<int64_t> Value::integer(int64_t min, int64_t max) const {
  bool unbounded =
    min == std::numeric_limits<int64_t>::min() && max == std::numeric_limits<int64_t>::max();
  std::string expected = unbounded ? std::string("an integer")
                                   : "an integer between " + std::to_string(min) + " and " +
                                         std::to_string(max);
  if (!v_->IsNumber()) return type_error(expected);
  // A number, but fractional, too large or out of range: show it.
  if (!v_->IsInt64() || v_->GetInt64() < min || v_->GetInt64() > max) {
    return error("expected " + expected + ", got " + describe_number(*v_));
  }
  return v_->GetInt64();
}

Result<double> Value::number() const {
  if (!v_->IsNumber()) return type_error("a number");
  return v_->GetDouble();
}

Result<Object> Value::object() const {
  if (!v_->IsObject()) return type_error("an object");
  return Object(*this);
}

Result<Array> Value::array() const {
  if (!v_->IsArray()) return type_error("an array");
  return Array(*this);
}

std::optional<Value> Object::find(std::string_view key) const {
  const rapidjson::Value& obj = value_.raw();
  for (auto it = obj.MemberBegin(); it != obj.MemberEnd(); ++it) {
    if (std::string_view(it->name.GetString(), it->name.GetStringLength()) == key) {
      if (it->value.IsNull()) return std::nullopt;
      return Value(&it->value, value_.root_);
    }
  }
  return std::nullopt;
}

Result<Value> Object::required(std::string_view key) const {
  std::optional<Value> v = find(key);
  if (!v) return error("missing required field '" + std::string(key) + "'");
  return *v;
}

Result<std::string_view> Object::required_string(std::string_view key) const {
  auto v = required(key);
  if (!v) return std::move(v).error();
  return v->string();
}

Result<std::optional<std::string_view>> Object::optional_string(std::string_view key) const {
  std::optional<Value> v = find(key);
  if (!v) return std::optional<std::string_view>();
  auto s = v->string();
  if (!s) return std::move(s).error();
  return std::optional<std::string_view>(*s);
}

Result<int64_t> Object::required_integer(std::string_view key, int64_t min, int64_t max) const {
  auto v = required(key);
  if (!v) return std::move(v).error();
  return v->integer(min, max);
}

Result<std::optional<int64_t>> Object::optional_integer(std::string_view key, int64_t min,
                                                        int64_t max) const {
  std::optional<Value> v = find(key);
  if (!v) return std::optional<int64_t>();
  auto n = v->integer(min, max);
  if (!n) return std::move(n).error();
  return std::optional<int64_t>(*n);
}

Result<std::optional<bool>> Object::optional_bool(std::string_view key) const {
  std::optional<Value> v = find(key);
  if (!v) return std::optional<bool>();
  auto b = v->boolean();
  if (!b) return std::move(b).error();
  return std::optional<bool>(*b);
}

Result<Object> Object::required_object(std::string_view key) const {
  auto v = required(key);
  if (!v) return std::move(v).error();
  return v->object();
}

Result<std::optional<Object>> Object::optional_object(std::string_view key) const {
  std::optional<Value> v = find(key);
  if (!v) return std::optional<Object>();
  auto o = v->object();
  if (!o) return std::move(o).error();
  return std::optional<Object>(*o);
}

Result<Array> Object::required_array(std::string_view key) const {
  auto v = required(key);
  if (!v) return std::move(v).error();
  return v->array();
}

Result<std::optional<Array>> Object::optional_array(std::string_view key) const {
  std::optional<Value> v = find(key);
  if (!v) return std::optional<Array>();
  auto a = v->array();
  if (!a) return std::move(a).error();
  return std::optional<Array>(*a);
}

Result<Document> Document::parse(std::string_view text, const Limits& limits) {
  if (text.size() > limits.max_bytes) {
    return make_error("JSON document of " + std::to_string(text.size()) +
                      " bytes exceeds the limit of " + std::to_string(limits.max_bytes) +
                      " bytes");
  }
  auto doc = std::make_unique<rapidjson::Document>();
  rapidjson::MemoryStream stream(text.data(), text.size());
  rapidjson::Reader reader;
  DepthLimiter limiter(*doc, limits.max_depth);
  rapidjson::ParseResult result;
  auto generate = [&](rapidjson::Document&) {
    result = reader.Parse<kParseFlags>(stream, limiter);
    return !result.IsError();
  };
  doc->Populate(generate);
  if (result.IsError()) {
    std::string reason = limiter.too_deep()
                             ? "nesting deeper than " + std::to_string(limits.max_depth) + " levels"
                             : std::string(rapidjson::GetParseError_En(result.Code()));
    return make_error("invalid JSON at offset " + std::to_string(result.Offset()) + ": " + reason);
  }
  // MemoryStream reports a NUL byte as the end of input; anything after one
  // would otherwise be silently ignored.
  if (stream.Tell() != text.size()) {
    return make_error("invalid JSON at offset " + std::to_string(stream.Tell()) +
                      ": unexpected NUL byte");
  }
  return Document(std::move(doc));
}

Writer& Writer::start_object() {
  w_.StartObject();
  return *this;
}

Writer& Writer::end_object() {
  w_.EndObject();
  return *this;
}

Writer& Writer::start_array() {
  w_.StartArray();
  return *this;
}

Writer& Writer::end_array() {
  w_.EndArray();
  return *this;
}

Writer& Writer::key(std::string_view k) {
  std::string scratch;
  std::string_view s = valid_utf8(k, scratch);
  w_.Key(s.data(), static_cast<rapidjson::SizeType>(s.size()), true);
  return *this;
}

Writer& Writer::string(std::string_view v) {
  std::string scratch;
  std::string_view s = valid_utf8(v, scratch);
  w_.String(s.data(), static_cast<rapidjson::SizeType>(s.size()), true);
  return *this;
}

Writer& Writer::integer(int64_t v) {
  w_.Int64(v);
  return *this;
}

Writer& Writer::boolean(bool v) {
  w_.Bool(v);
  return *this;
}

Writer& Writer::null() {
  w_.Null();
  return *this;
}

std::string quote(std::string_view s) {
  Writer w;
  w.string(s);
  return w.str();
}

}  // namespace trellis::json
