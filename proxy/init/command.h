// Runs a program (no shell) with optional standard input and captures its
// standard error, for driving iptables.
#pragma once

#include <string>
#include <vector>

#include "common/base/result.h"

namespace trellis::proxy::init {

struct CommandOutput {
  int exit_code = 0;
  std::string stderr_text;
};

// Fails only when the program could not be run at all (not found, fork
// failed); a non-zero exit is reported in CommandOutput.
Result<CommandOutput> run_command(const std::vector<std::string>& argv, const std::string& input = {});

}  // namespace trellis::proxy::init
