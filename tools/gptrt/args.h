// Command-line flags: every flag takes `--flag=value` and `--flag value`; switches take none.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace gptrt::cli {

/// One accepted flag.
struct FlagSpec {
  std::string name;  // without the leading dashes
  bool takes_value;
  std::string help;
  bool repeatable = false;  // may be given more than once (every value kept, in order)
};

/// Parsed flags of one subcommand.
class Args {
 public:
  /// Parses argv; throws gptrt::Error (kInvalidArgument) for unknown or malformed flags and for a
  /// flag given twice that is not repeatable.
  static Args parse(const std::vector<FlagSpec>& specs, const std::vector<std::string>& argv,
                    const std::string& command);

  bool has(const std::string& name) const { return values_.count(name) != 0; }
  /// Last value of `name`, or `fallback`.
  std::string get(const std::string& name, const std::string& fallback = "") const;
  /// Every value of a repeatable flag, in order.
  std::vector<std::string> all(const std::string& name) const;
  /// The integer value of `name` (or `fallback`), refused outside [min_value, max_value].
  int64_t get_int(const std::string& name, int64_t fallback, int64_t min_value,
                  int64_t max_value = INT64_MAX) const;
  /// The finite number `name` holds (or `fallback`), refused outside [min_value, max_value].
  double get_double(const std::string& name, double fallback, double min_value,
                    double max_value = 1e300) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

/// Prints `usage` and the flag table.
void print_help(const std::string& usage, const std::vector<FlagSpec>& specs);

}  // namespace gptrt::cli
