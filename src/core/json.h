// A small JSON reader for config.json, safetensors headers and tokenizer files.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gptrt::json {

/// One JSON value. Objects keep keys sorted; numbers keep the text's integer value when exact.
class Value {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_object() const { return kind_ == Kind::kObject; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kNumber; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  /// True for a number with no fraction that fits int64.
  bool is_integer() const { return kind_ == Kind::kNumber && is_int_; }

  bool as_bool() const { return bool_; }
  double as_double() const { return number_; }
  int64_t as_int() const { return int_; }
  const std::string& as_string() const { return string_; }
  const std::vector<Value>& as_array() const { return array_; }
  const std::map<std::string, Value>& as_object() const { return object_; }
  /// Member `key` of an object, or nullptr.
  const Value* find(const std::string& key) const;

  static Value parse(std::string_view text, const std::string& what);

 private:
  friend class Parser;
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  bool is_int_ = false;
  double number_ = 0;
  int64_t int_ = 0;
  std::string string_;
  std::vector<Value> array_;
  std::map<std::string, Value> object_;
};

/// Parses `text`; throws gptrt::Error (kParseError) naming `what` and the byte offset.
inline Value parse(std::string_view text, const std::string& what) {
  return Value::parse(text, what);
}

/// `s` as a JSON string literal with quotes and escapes.
std::string quote(std::string_view s);

}  // namespace gptrt::json
