// Errors of the Kubernetes client. Error::code is the HTTP status the API
// server answered (or the `code` of a Status object in a watch ERROR event);
// 0 means no answer arrived (connect, TLS, timeout, a broken connection), so a
// caller can tell "the server said no" from "we could not ask".
//
// The API server explains failures with a Status object,
//   {"kind":"Status","status":"Failure","reason":"Conflict","code":409,
//    "message":"Operation cannot be fulfilled on configmaps \"a\": ..."}
// which becomes the message "Conflict (409): Operation cannot be fulfilled ...".
#pragma once

#include <string_view>

#include "common/base/result.h"
#include "common/json/json.h"

namespace trellis::kube {

// A non-2xx answer. From a Status body: "<reason> (<code>): <message>"
// (reason or message may be missing: "Conflict (409)", "(500): boom"); any
// other body: "HTTP <status> <phrase>: <body, at most 200 bytes, control
// characters replaced>", or "HTTP <status> <phrase>" when empty. The code is
// `http_status`.
Error api_error(int http_status, std::string_view body);

// A Status object already parsed (a watch ERROR event's object); the code is
// its `code` field, 0 when absent. Never fails: missing fields are left out.
Error status_error(const json::Value& status);

inline bool is_not_found(const Error& e) { return e.code == 404; }
inline bool is_conflict(const Error& e) { return e.code == 409; }
inline bool is_already_exists(const Error& e) { return e.code == 409; }
// 410: a resourceVersion or continue token too old to serve; relist.
inline bool is_gone(const Error& e) { return e.code == 410; }
// Worth retrying unchanged after a back-off: no answer, 429, or 5xx.
inline bool is_retryable(const Error& e) { return e.code == 0 || e.code == 429 || e.code >= 500; }

}  // namespace trellis::kube
