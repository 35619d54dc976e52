#include "common/kube/errors.h"

#include <string>

#include "common/http/message.h"

namespace trellis::kube {

namespace {

constexpr size_t kMaxBodyInMessage = 200;

std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, kMaxBodyInMessage)) {
    unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string field(const json::Object& object, std::string_view key) {
  auto v = object.find(key);
  if (!v || !v->is_string()) return std::string();
  return std::string(*v->string());
}

Error from_status(const json::Object& status, int code) {
  std::string reason = field(status, "reason");
  std::string message = field(status, "message");
  std::string text = reason;
  if (!text.empty()) text += ' ';
  text += "(" + std::to_string(code) + ")";
  if (!message.empty()) text += ": " + message;
  return make_error(std::move(text), code);
}

}  // namespace

Error status_error(const json::Value& status) {
  auto object = status.object();
  if (!object.ok()) return make_error("(0): malformed Status object", 0);
  int code = 0;
  if (auto c = object->find("code"); c && c->is_number()) {
    auto n = c->integer(0, 999);
    if (n.ok()) code = static_cast<int>(*n);
  }
  return from_status(*object, code);
}

Error api_error(int http_status, std::string_view body) {
  auto doc = json::Document::parse(body, json::Limits{});
  if (doc.ok()) {
    auto object = doc->root().object();
    if (object.ok() && field(*object, "kind") == "Status") return from_status(*object, http_status);
  }
  std::string text = "HTTP " + std::to_string(http_status) + " " +
                     std::string(http::reason_phrase(http_status));
  std::string shown = printable(body);
  if (!shown.empty()) text += ": " + shown;
  return make_error(std::move(text), http_status);
}

}  // namespace trellis::kube
