// safetensors reader (Hugging Face folders): every tensor it returns lies inside the file, is
// aligned for its dtype and shares no bytes with another; anything else is gptrt::Error.
#include <algorithm>
#include <vector>

#include "core/safetensors.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gptrt::fuzz::init();
  static const std::string path = gptrt::fuzz::scratch(".safetensors");
  gptrt::fuzz::write(path, data, size);
  try {
    auto tensors = gptrt::safetensors::read(path);
    for (const auto& [name, t] : tensors) {
      if (reinterpret_cast<uintptr_t>(t.raw()) % gptrt::dtype_size(t.dtype()) != 0)
        __builtin_trap();  // a misaligned view
      const auto* p = static_cast<const uint8_t*>(t.raw());
      volatile uint8_t sum = 0;
      for (size_t i = 0; i < t.nbytes(); ++i) sum = static_cast<uint8_t>(sum + p[i]);
    }
  } catch (const gptrt::Error&) {
  }
  return 0;
}
