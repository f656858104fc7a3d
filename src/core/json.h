// JSON through nlohmann/json (third_party/nlohmann_json), with gptrt's errors: parse failures
// name the file and the byte offset; integers are read only when they fit int64.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nlohmann/json.hpp"

namespace gptrt::json {

/// One JSON value (objects keep keys sorted).
using Value = nlohmann::json;

/// Parses `text`; throws gptrt::Error (kParseError) naming `what` and the byte offset.
Value parse(std::string_view text, const std::string& what);

/// Member `key` of an object, or nullptr (also when `v` is no object).
const Value* find(const Value& v, const std::string& key);

/// The integer `v` holds, if it is an integer that fits int64.
std::optional<int64_t> as_int64(const Value& v);

/// `s` as a JSON string literal with quotes and escapes (invalid UTF-8 becomes U+FFFD).
std::string quote(std::string_view s);

}  // namespace gptrt::json
