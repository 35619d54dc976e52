// Prometheus text exposition format 0.0.4, for the admin server's /metrics.
#pragma once

#include <prometheus/collectable.h>

#include <string>
#include <vector>

#include "common/metrics/metrics.h"

namespace trellis::metrics {

// The Content-Type of a text_exposition() response.
inline constexpr char kTextContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Serializes the families of `registry` and of `extra` (borrowed for the call,
// e.g. a per-worker collectable), families sorted by name and children by
// labels so the output is stable. Family names must be unique across all of
// them. Help text is escaped here: prometheus-cpp 1.0.1 escapes only label
// values. Safe from any thread while other threads update metrics.
std::string text_exposition(const Registry& registry,
                            const std::vector<const prometheus::Collectable*>& extra = {});

}  // namespace trellis::metrics
