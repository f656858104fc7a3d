#include "core/json.h"

#include <limits>
#include <set>
#include <vector>

#include "gptrt/error.h"

namespace gptrt::json {

Value parse(std::string_view text, const std::string& what) {
  // Duplicate keys are refused (nlohmann/json would keep the last one silently): the keys of
  // every open object, innermost last.
  std::vector<std::set<std::string>> keys;
  auto refuse_duplicates = [&](int, nlohmann::json::parse_event_t event, Value& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) keys.emplace_back();
    if (event == E::object_end && !keys.empty()) keys.pop_back();
    if (event == E::key && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second)
      throw Error(ErrorCode::kParseError, "'" + what + "' has the key \"" +
                                              parsed.get<std::string>() +
                                              "\" twice in one object; keep one");
    return true;
  };
  try {
    return Value::parse(text.begin(), text.end(), refuse_duplicates);
  } catch (const nlohmann::json::parse_error& e) {
    std::string why = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..."
    if (size_t at = why.find("] "); at != std::string::npos) why = why.substr(at + 2);
    throw Error(ErrorCode::kParseError, "'" + what + "' is not valid JSON (at byte " +
                                            std::to_string(e.byte) + "): " + why);
  } catch (const nlohmann::json::exception& e) {
    // Valid syntax the library cannot hold, e.g. a number past double's range (1e999).
    std::string why = e.what();
    if (size_t at = why.find("] "); at != std::string::npos) why = why.substr(at + 2);
    throw Error(ErrorCode::kParseError, "'" + what + "' cannot be read: " + why);
  }
}

const Value* find(const Value& v, const std::string& key) {
  if (!v.is_object()) return nullptr;
  auto it = v.find(key);
  return it == v.end() ? nullptr : &*it;
}

std::optional<int64_t> as_int64(const Value& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

std::string quote(std::string_view s) {
  return Value(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace gptrt::json
