// The YAML that kubeconfig files are written in, converted to JSON so that one
// JSON decoder (with path-qualified errors) reads both forms.
//
// A deliberately small, strictly bounded subset: what kubectl, client-go and
// our sandbox write. Supported: block mappings and block sequences (including
// "- key: value" items and sequences at their key's indentation), plain,
// 'single-quoted' and "double-quoted" scalars on one line, the empty flow
// collections {} and [], comments, and one leading "---". Plain scalars
// resolve as in YAML 1.2's core schema: null, ~ and nothing are null, true and
// false are booleans, decimal integers are numbers, everything else is a
// string; quoted scalars are always strings.
//
// Anything else (anchors, aliases, tags, block scalars | and >, non-empty flow
// collections, multi-line scalars, complex keys, several documents, tabs in
// indentation, duplicate keys, nesting deeper than 32 levels) is refused with
// "line N: <why>" rather than guessed at.
#pragma once

#include <string>
#include <string_view>

#include "common/base/result.h"

namespace trellis::kube {

Result<std::string> yaml_to_json(std::string_view yaml);

}  // namespace trellis::kube
