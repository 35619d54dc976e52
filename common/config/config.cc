#include "common/config/config.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace trellis::config {

Environment process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

Environment map_environment(std::map<std::string, std::string> values) {
  return [values = std::move(values)](const std::string& name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

std::vector<std::string> arguments(int argc, const char* const* argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return args;
}

namespace detail {

namespace {

constexpr size_t kMaxShown = 64;  // a hostile megabyte argument is not echoed back whole

// Printable ASCII as is, anything else as \xNN, cut after kMaxShown bytes.
std::string escaped(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  if (text.size() > kMaxShown) out += "...";
  return out;
}

bool valid_flag_name(std::string_view flag) {
  if (flag.size() < 3 || flag.substr(0, 2) != "--" || flag[2] == '-' || flag.back() == '-') {
    return false;
  }
  return std::all_of(flag.begin() + 2, flag.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

bool valid_env_name(std::string_view env) {
  if (env.empty() || (env[0] >= '0' && env[0] <= '9')) return false;
  return std::all_of(env.begin(), env.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool is_help(std::string_view arg) { return arg == "--help" || arg == "-h"; }

}  // namespace

std::string quoted(std::string_view text) { return "'" + escaped(text) + "'"; }

Error integer_error(std::string_view noun, std::string_view min, std::string_view max,
                    std::string_view text) {
  return make_error("expected " + std::string(noun) + " between " + std::string(min) + " and " +
                    std::string(max) + ", got " + quoted(text));
}

Result<bool> parse_bool(std::string_view text) {
  if (text == "true") return true;
  if (text == "false") return false;
  return make_error("expected true or false, got " + quoted(text));
}

Result<std::vector<std::string>> parse_list(std::string_view text) {
  std::vector<std::string> items;
  if (text.empty()) return items;
  size_t start = 0;
  while (true) {
    size_t comma = std::min(text.find(',', start), text.size());
    auto item = text.substr(start, comma - start);
    auto first = item.find_first_not_of(" \t");
    if (first == std::string_view::npos) return make_error("empty item in list " + quoted(text));
    item = item.substr(first, item.find_last_not_of(" \t") - first + 1);
    items.emplace_back(item);
    if (comma == text.size()) return items;
    start = comma + 1;
  }
}

Error unknown_word(std::string_view text, const std::vector<std::string>& words) {
  std::string want;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) want += i + 1 == words.size() ? " or " : ", ";
    want += words[i];
  }
  return make_error("unknown value " + quoted(text) + " (want " + want + ")");
}

std::string metavar_of(const std::vector<std::string>& words) {
  std::string out = "<";
  for (size_t i = 0; i < words.size(); ++i) out += (i > 0 ? "|" : "") + words[i];
  return out + ">";
}

Status check_declaration(const std::vector<Declared>& declared, const Option& option) {
  if (!valid_flag_name(option.flag)) {
    return make_error("invalid flag name " + quoted(option.flag) + " (want --lower-case-words)");
  }
  if (option.flag == "--help") return make_error("flag --help is reserved");
  if (!option.env.empty() && !valid_env_name(option.env)) {
    return make_error(option.flag + ": invalid environment variable name " + quoted(option.env));
  }
  if (option.required && option.default_text) {
    return make_error(option.flag + ": a required option cannot have a default");
  }
  for (const auto& d : declared) {
    if (d.option.flag == option.flag) return make_error("flag " + option.flag + " is declared twice");
    if (!option.env.empty() && d.option.env == option.env) {
      return make_error("environment variable " + option.env + " is declared twice");
    }
  }
  return ok_status();
}

Result<Plan> plan(const std::vector<Declared>& declared, bool positionals_declared,
                  const std::vector<std::string>& args, const Environment& env) {
  Plan plan;
  // --help wins over any other mistake on the command line: it is what a confused user types.
  for (const auto& arg : args) {
    if (arg == "--") break;
    if (is_help(arg)) {
      plan.help = true;
      return plan;
    }
  }

  std::vector<std::optional<std::string>> given(declared.size());
  bool options_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (options_ended || arg == "-" || arg.empty() || arg[0] != '-') {
      if (!positionals_declared) return make_error("unexpected argument " + quoted(arg));
      if (arg.find('\0') != std::string_view::npos) {
        return make_error("argument " + quoted(arg) + " contains a NUL byte");
      }
      plan.positionals.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      options_ended = true;
      continue;
    }
    auto eq = arg.find('=');
    auto name = arg.substr(0, eq);
    auto it = std::find_if(declared.begin(), declared.end(),
                           [&](const Declared& d) { return d.option.flag == name; });
    if (arg.substr(0, 2) != "--" || it == declared.end()) {
      return make_error("unknown flag " + escaped(name));
    }
    auto index = static_cast<size_t>(it - declared.begin());
    if (given[index]) return make_error(it->option.flag + ": given more than once");
    if (eq != std::string_view::npos) {
      given[index] = std::string(arg.substr(eq + 1));
    } else if (it->metavar.empty()) {
      given[index] = "true";
    } else if (i + 1 < args.size() && args[i + 1].compare(0, 2, "--") != 0) {
      given[index] = args[++i];
    } else {
      return make_error(it->option.flag + ": missing value");
    }
  }

  for (size_t i = 0; i < declared.size(); ++i) {
    const auto& option = declared[i].option;
    if (option.default_text) {
      plan.assignments.push_back({i, *option.default_text, option.flag + " (default)"});
    }
    if (given[i]) {
      plan.assignments.push_back({i, std::move(*given[i]), option.flag});
      continue;
    }
    std::optional<std::string> from_env;
    if (!option.env.empty()) from_env = env(option.env);
    if (from_env && !from_env->empty()) {
      plan.assignments.push_back({i, std::move(*from_env), option.env});
    } else if (option.required) {
      return make_error(option.flag + ": required" +
                        (option.env.empty() ? "" : " (or set " + option.env + ")"));
    }
  }
  return plan;
}

Status apply(const Assignment& assignment, const std::function<Status(std::string_view)>& assign) {
  if (assignment.text.find('\0') != std::string::npos) {
    return make_error(assignment.source + ": value contains a NUL byte");
  }
  auto s = assign(assignment.text);
  if (!s.ok()) return make_error(assignment.source + ": " + s.error().message);
  return s;
}

std::string help(const std::string& program, const std::string& summary,
                 const std::vector<Declared>& declared, const std::string& positional_name,
                 const std::string& positional_help) {
  struct Row {
    std::string flag, env, text;
  };
  std::vector<Row> rows;
  for (const auto& d : declared) {
    Row row{d.option.flag + (d.metavar.empty() ? "" : " " + d.metavar), d.option.env,
            d.option.help};
    if (d.option.required) {
      row.text += " (required)";
    } else if (d.option.default_text && !d.option.default_text->empty()) {
      row.text += " (default: " + *d.option.default_text + ")";
    }
    rows.push_back(std::move(row));
  }
  rows.push_back({"-h, --help", "", "Show this help and exit."});
  size_t flag_width = 0, env_width = 0;
  for (const auto& r : rows) {
    flag_width = std::max(flag_width, r.flag.size());
    env_width = std::max(env_width, r.env.size());
  }

  std::string out = "Usage: " + program + " [options]";
  if (!positional_name.empty()) out += " [" + positional_name + "...]";
  out += "\n\n";
  if (!summary.empty()) out += summary + "\n\n";
  out += "Options:\n";
  for (const auto& r : rows) {
    std::string line = "  " + r.flag + std::string(flag_width - r.flag.size() + 2, ' ');
    if (env_width > 0) line += r.env + std::string(env_width - r.env.size() + 2, ' ');
    out += line + r.text + "\n";
  }
  if (!positional_name.empty()) {
    out += "\nArguments:\n  " + positional_name + "...  " + positional_help + "\n";
  }
  return out;
}

}  // namespace detail

}  // namespace trellis::config
