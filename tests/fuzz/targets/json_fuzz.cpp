// JSON: any bytes parse to a value or throw gptrt::Error (never another exception or a crash);
// a parsed document's integers read back through as_int64 without overflow.
#include "core/json.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gptrt::fuzz::init();
  try {
    auto v = gptrt::json::parse(std::string_view(reinterpret_cast<const char*>(data), size),
                                "fuzz.json");
    if (v.is_object())
      for (const auto& [k, x] : v.items()) (void)gptrt::json::as_int64(x);
    (void)gptrt::json::quote(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const gptrt::Error&) {
  }
  return 0;
}
