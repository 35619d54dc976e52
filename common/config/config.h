// Flags and environment into one typed, validated config struct per binary.
//
//   struct ProxyConfig { int workers = 0; log::Level log_level{}; bool strict = false; };
//   config::Spec<ProxyConfig> spec("trellis-proxy", "Trellis sidecar proxy.");
//   spec.option({"--workers", "TRELLIS_WORKERS", "Worker threads.", "2"},
//               config::integer(&ProxyConfig::workers, 1, 64))
//       .option({"--strict", "TRELLIS_STRICT", "Refuse non-mesh inbound traffic.", "false"},
//               config::boolean(&ProxyConfig::strict));
//   auto parsed = spec.parse(config::arguments(argc, argv), config::process_environment());
//   if (!parsed) { print parsed.error().message; exit 2 }
//   if (parsed->help) { print spec.help(); exit 0 }
//
// Precedence: a flag beats its environment variable, which beats the declared
// default; an option with no default keeps the struct's initial value. Flags
// are `--name value` or `--name=value`; a boolean is `--name` or
// `--name=true|false`; `--` ends the options; positional arguments are an
// error unless declared. An empty environment variable counts as unset
// (charts render absent values as ""). Every error is a Result with an exact
// message prefixed by where the value came from: `--workers: ...`,
// `TRELLIS_WORKERS: ...` or `--workers (default): ...` (a bug in a declaration).
// Tests pass map_environment() instead of the process environment.
#pragma once

#include <charconv>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/base/result.h"

namespace trellis::config {

// Looks up one environment variable; nullopt when unset.
using Environment = std::function<std::optional<std::string>(const std::string& name)>;
Environment process_environment();
Environment map_environment(std::map<std::string, std::string> values);

// argv without the program name.
std::vector<std::string> arguments(int argc, const char* const* argv);

struct Option {
  std::string flag;  // "--workers": "--" and lower-case words joined by '-'
  std::string env;   // "TRELLIS_WORKERS", or "" for a flag-only option
  std::string help;
  // Parsed like any other value, so a bad default fails every parse (and its unit test).
  std::optional<std::string> default_text;
  bool required = false;  // no default; must come from the flag or the environment
};

// How the text of one option becomes a field of Config.
template <typename Config>
struct Value {
  std::string metavar;  // shown in --help, "<int>"; empty for a boolean switch
  std::function<Status(std::string_view text, Config& config)> assign;
};

namespace detail {

template <typename T>
struct identity {
  using type = T;
};

std::string quoted(std::string_view text);
Error integer_error(std::string_view noun, std::string_view min, std::string_view max,
                    std::string_view text);
Result<bool> parse_bool(std::string_view text);
Result<std::vector<std::string>> parse_list(std::string_view text);
Error unknown_word(std::string_view text, const std::vector<std::string>& words);
std::string metavar_of(const std::vector<std::string>& words);

template <typename I>
Result<I> parse_integer(std::string_view noun, std::string_view text, I min, I max) {
  using Wide = std::conditional_t<std::is_signed_v<I>, long long, unsigned long long>;
  Wide wide{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), wide);
  if (ec != std::errc() || end != text.data() + text.size() || wide < Wide(min) || wide > Wide(max)) {
    return integer_error(noun, std::to_string(min), std::to_string(max), text);
  }
  return static_cast<I>(wide);
}

struct Declared {
  Option option;
  std::string metavar;
};

// One value to apply, in order: defaults first, then the winning flag or variable.
struct Assignment {
  size_t option;
  std::string text;
  std::string source;  // "--workers", "TRELLIS_WORKERS" or "--workers (default)"
};

struct Plan {
  bool help = false;
  std::vector<Assignment> assignments;
  std::vector<std::string> positionals;
};

Status check_declaration(const std::vector<Declared>& declared, const Option& option);
Result<Plan> plan(const std::vector<Declared>& declared, bool positionals_declared,
                  const std::vector<std::string>& args, const Environment& env);
std::string help(const std::string& program, const std::string& summary,
                 const std::vector<Declared>& declared, const std::string& positional_name,
                 const std::string& positional_help);
Status apply(const Assignment& assignment,
             const std::function<Status(std::string_view)>& assign);

}  // namespace detail

// Value types. Each stores into a field of Config.

// A signed or unsigned integer within [min, max].
template <typename C, typename I>
Value<C> integer(I C::*field, typename detail::identity<I>::type min,
                 typename detail::identity<I>::type max) {
  static_assert(std::is_integral_v<I> && !std::is_same_v<I, bool>, "use boolean()");
  return {"<int>", [=](std::string_view text, C& c) -> Status {
            auto v = detail::parse_integer<I>("an integer", text, min, max);
            if (!v.ok()) return std::move(v).error();
            c.*field = *v;
            return ok_status();
          }};
}

// A TCP port, 1..65535.
template <typename C>
Value<C> port(uint16_t C::*field) {
  return {"<port>", [=](std::string_view text, C& c) -> Status {
            auto v = detail::parse_integer<uint16_t>("a port", text, 1, 65535);
            if (!v.ok()) return std::move(v).error();
            c.*field = *v;
            return ok_status();
          }};
}

// A switch: `--name` sets true; values are exactly "true" or "false".
template <typename C>
Value<C> boolean(bool C::*field) {
  return {"", [=](std::string_view text, C& c) -> Status {
            auto v = detail::parse_bool(text);
            if (!v.ok()) return std::move(v).error();
            c.*field = *v;
            return ok_status();
          }};
}

// Any text, the empty string included.
template <typename C>
Value<C> text(std::string C::*field) {
  return {"<string>", [=](std::string_view text, C& c) -> Status {
            c.*field = std::string(text);
            return ok_status();
          }};
}

// A file path: not empty. Whether it exists is for whoever opens it (and may change).
template <typename C>
Value<C> path(std::string C::*field) {
  return {"<path>", [=](std::string_view text, C& c) -> Status {
            if (text.empty()) return make_error("expected a file path, got ''");
            c.*field = std::string(text);
            return ok_status();
          }};
}

// Comma-separated items, blanks around items trimmed; "" is the empty list.
template <typename C>
Value<C> list(std::vector<std::string> C::*field) {
  return {"<list>", [=](std::string_view text, C& c) -> Status {
            auto v = detail::parse_list(text);
            if (!v.ok()) return std::move(v).error();
            c.*field = std::move(*v);
            return ok_status();
          }};
}

// One of a fixed set of words, each mapped to a value of E (exact, case-sensitive).
template <typename C, typename E>
Value<C> one_of(E C::*field, std::vector<std::pair<std::string, E>> words) {
  std::vector<std::string> names;
  for (const auto& w : words) names.push_back(w.first);
  return {detail::metavar_of(names), [=](std::string_view text, C& c) -> Status {
            for (const auto& [word, value] : words) {
              if (word == text) {
                c.*field = value;
                return ok_status();
              }
            }
            return detail::unknown_word(text, names);
          }};
}

// Any type with its own parser, whose error message is used as is.
template <typename C, typename T>
Value<C> custom(T C::*field, std::string metavar,
                typename detail::identity<std::function<Result<T>(std::string_view)>>::type parse) {
  return {std::move(metavar), [=](std::string_view text, C& c) -> Status {
            auto v = parse(text);
            if (!v.ok()) return std::move(v).error();
            c.*field = std::move(*v);
            return ok_status();
          }};
}

// A duration, parsed by the caller's parser (usually gateway::parse_duration, GEP-2257).
template <typename C, typename D>
Value<C> duration(D C::*field,
                  typename detail::identity<std::function<Result<D>(std::string_view)>>::type parse) {
  return custom(field, "<duration>", std::move(parse));
}

template <typename Config>
struct Parsed {
  Config config;
  bool help = false;  // --help or -h was given: print Spec::help(), exit 0; config is unset
};

// The declarations of one binary. Declaration mistakes (bad or duplicate
// names) are reported by every parse(), so the binary's config test catches them.
template <typename Config>
class Spec {
 public:
  Spec(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}

  Spec& option(Option option, Value<Config> value) {
    if (auto s = detail::check_declaration(declared_, option); !s.ok() && !declaration_error_) {
      declaration_error_ = std::move(s).error();
    }
    declared_.push_back({std::move(option), std::move(value.metavar)});
    assigners_.push_back(std::move(value.assign));
    return *this;
  }

  // Accepts positional arguments (all of them, in order) into `field`.
  Spec& positionals(std::string name, std::string help, std::vector<std::string> Config::*field) {
    if (positionals_ != nullptr && !declaration_error_) {
      declaration_error_ = make_error("positional arguments are declared twice");
    }
    positional_name_ = std::move(name);
    positional_help_ = std::move(help);
    positionals_ = field;
    return *this;
  }

  // `args` excludes the program name (see arguments()).
  Result<Parsed<Config>> parse(const std::vector<std::string>& args, const Environment& env) const {
    if (declaration_error_) return *declaration_error_;
    auto plan = detail::plan(declared_, positionals_ != nullptr, args, env);
    if (!plan.ok()) return std::move(plan).error();
    Parsed<Config> parsed{};
    if (plan->help) {
      parsed.help = true;
      return parsed;
    }
    for (const auto& a : plan->assignments) {
      auto s = detail::apply(a, [&](std::string_view text) {
        return assigners_[a.option](text, parsed.config);
      });
      if (!s.ok()) return std::move(s).error();
    }
    if (positionals_ != nullptr) parsed.config.*positionals_ = std::move(plan->positionals);
    return parsed;
  }

  // Generated from the declarations: flag, variable, help, default; aligned.
  std::string help() const {
    return detail::help(program_, summary_, declared_, positional_name_, positional_help_);
  }

 private:
  std::string program_;
  std::string summary_;
  std::vector<detail::Declared> declared_;
  std::vector<std::function<Status(std::string_view, Config&)>> assigners_;
  std::vector<std::string> Config::*positionals_ = nullptr;
  std::string positional_name_;
  std::string positional_help_;
  std::optional<Error> declaration_error_;
};

}  // namespace trellis::config
