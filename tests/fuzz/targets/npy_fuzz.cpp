// .npy reader (--loadInputs): any file gives a tensor whose bytes are all readable, or
// gptrt::Error.
#include "core/npy.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gptrt::fuzz::init();
  static const std::string path = gptrt::fuzz::scratch(".npy");
  gptrt::fuzz::write(path, data, size);
  try {
    gptrt::Tensor t = gptrt::npy::read(path);
    const auto* p = static_cast<const uint8_t*>(t.raw());
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < t.nbytes(); ++i) sum = static_cast<uint8_t>(sum + p[i]);
  } catch (const gptrt::Error&) {
  }
  return 0;
}
