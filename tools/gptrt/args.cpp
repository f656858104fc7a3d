#include "args.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

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
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-') {
      a.positional_.push_back(arg);
      continue;
    }
    std::string body = arg.substr(arg[1] == '-' ? 2 : 1);
    std::string name = body, value;
    bool inline_value = false;
    size_t eq = body.find('=');
    if (eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      inline_value = true;
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : specs) {
      if (s.name == name) spec = &s;
    }
    if (!spec) {
      std::string best;
      size_t best_d = 4;
      for (const FlagSpec& s : specs) {
        size_t d = edit_distance(s.name, name);
        if (d < best_d) {
          best_d = d;
          best = s.name;
        }
      }
      bad("gptrt " + command + ": unknown flag '" + arg + "'" +
          (best.empty() ? "" : "; did you mean --" + best + "?") + " (see gptrt " + command +
          " --help)");
    }
    if (spec->takes_value) {
      if (!inline_value) {
        if (i + 1 >= argv.size())
          bad("gptrt " + command + ": flag --" + name + " needs a value (--" + name +
              "=VALUE or --" + name + " VALUE)");
        value = argv[++i];
      }
      a.values_[name].push_back(value);
    } else {
      if (inline_value && value != "true" && value != "1") {
        if (value == "false" || value == "0") continue;
        bad("gptrt " + command + ": flag --" + name + " takes no value, found '" + value + "'");
      }
      a.values_[name].push_back("true");
    }
  }
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

int64_t Args::get_int(const std::string& name, int64_t fallback, int64_t min_value) const {
  if (!has(name)) return fallback;
  std::string v = get(name);
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0)
    bad("--" + name + " expects an integer, found '" + v + "'");
  if (x < min_value)
    bad("--" + name + " must be at least " + std::to_string(min_value) + ", found " + v);
  return x;
}

double Args::get_double(const std::string& name, double fallback, double min_value) const {
  if (!has(name)) return fallback;
  std::string v = get(name);
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0') bad("--" + name + " expects a number, found '" + v + "'");
  if (x < min_value)
    bad("--" + name + " must be at least " + std::to_string(min_value) + ", found " + v);
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
