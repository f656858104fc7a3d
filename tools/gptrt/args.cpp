#include "args.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "CLI/CLI.hpp"
#include "gptrt/error.h"

namespace gptrt::cli {
namespace {

[[noreturn]] void bad(const std::string& msg) {
  throw Error(ErrorCode::kInvalidArgument, msg);
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] =
          std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    prev.swap(cur);
  }
  return prev[b.size()];
}

}  // namespace

Args Args::parse(const std::vector<FlagSpec>& specs, const std::vector<std::string>& argv,
                 const std::string& command) {
  // CLI11 reads the flags (each value flag once or more, `--f=v` or `--f v`; switches also as
  // `--f=true|false|1|0`); what it does not know comes back as extras: positional arguments, or an
  // unknown flag refused here with the nearest known name.
  CLI::App app("gptrt " + command);
  app.allow_extras();
  app.set_help_flag();  // --help is one of the specs
  std::map<std::string, std::vector<std::string>> values;
  std::map<std::string, int64_t> switches;
  for (const FlagSpec& spec : specs) {
    if (spec.takes_value) {
      app.add_option("--" + spec.name, values[spec.name], spec.help)
          ->expected(1)
          ->allow_extra_args(false)
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    } else {
      app.add_flag("--" + spec.name, switches[spec.name], spec.help);
    }
  }
  std::vector<const char*> raw = {"gptrt"};
  for (const std::string& a : argv) raw.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(raw.size()), raw.data());
  } catch (const CLI::ArgumentMismatch& e) {  // "--onnx: 1 required TEXT missing"
    std::string flag = std::string(e.what()).substr(0, std::string(e.what()).find(':'));
    bad("gptrt " + command + ": flag " + flag + " needs a value (" + flag + "=VALUE or " + flag +
        " VALUE)");
  } catch (const CLI::ConversionError& e) {  // "Could not convert: --fp16 = maybe"
    bad("gptrt " + command + ": " + e.what() + "; a switch takes no value, or true, false, 1, 0");
  } catch (const CLI::ParseError& e) {
    bad("gptrt " + command + ": " + e.what() + " (see gptrt " + command + " --help)");
  }
  Args a;
  for (const std::string& extra : app.remaining()) {
    if (extra.size() < 2 || extra[0] != '-') {
      a.positional_.push_back(extra);
      continue;
    }
    std::string name = extra.substr(extra.find_first_not_of('-'));
    name = name.substr(0, name.find('='));
    std::string best;
    size_t best_d = 4;
    for (const FlagSpec& spec : specs) {
      size_t d = edit_distance(spec.name, name);
      if (d < best_d) {
        best_d = d;
        best = spec.name;
      }
    }
    bad("gptrt " + command + ": unknown flag '" + extra + "'" +
        (best.empty() ? "" : "; did you mean --" + best + "?") + " (see gptrt " + command +
        " --help)");
  }
  for (const FlagSpec& spec : specs) {
    size_t times = spec.takes_value
                       ? values[spec.name].size()
                       : static_cast<size_t>(std::max<int64_t>(switches[spec.name], 0));
    if (times > 1 && !spec.repeatable)
      bad("gptrt " + command + ": flag --" + spec.name + " is given " + std::to_string(times) +
          " times; give it once");
  }
  for (auto& [name, v] : values)
    if (!v.empty()) a.values_[name] = std::move(v);
  for (const auto& [name, count] : switches)
    if (count > 0) a.values_[name] = {"true"};
  return a;
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() || it->second.empty() ? fallback : it->second.back();
}

std::vector<std::string> Args::all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

int64_t Args::get_int(const std::string& name, int64_t fallback, int64_t min_value,
                      int64_t max_value) const {
  if (!has(name)) return fallback;
  std::string v = get(name);
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0)
    bad("--" + name + " expects an integer, found '" + v + "'");
  if (x < min_value || x > max_value)
    bad("--" + name + " must be " + std::to_string(min_value) + " to " + std::to_string(max_value) +
        ", found " + v);
  return x;
}

double Args::get_double(const std::string& name, double fallback, double min_value,
                        double max_value) const {
  if (!has(name)) return fallback;
  std::string v = get(name);
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(x))
    bad("--" + name + " expects a finite number, found '" + v + "'");
  if (x < min_value || x > max_value) {
    std::ostringstream range;
    range << min_value << " to " << max_value;
    bad("--" + name + " must be " + range.str() + ", found " + v);
  }
  return x;
}

void print_help(const std::string& usage, const std::vector<FlagSpec>& specs) {
  std::printf("%s\n\nFlags (each takes --flag=VALUE or --flag VALUE):\n", usage.c_str());
  for (const FlagSpec& s : specs) {
    std::string left = "  --" + s.name + (s.takes_value ? "=VALUE" : "");
    std::printf("%-30s %s\n", left.c_str(), s.help.c_str());
  }
}

}  // namespace gptrt::cli
