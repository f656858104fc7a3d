// ONNX import: any bytes are read (zero-copy wire reader, tensors, attributes), shape-inferred
// and imported into a Network, or refused with gptrt::Error. What imports is then built for the
// reference backend with a small default profile (passes, constant folding, profile checks).
#include "fuzz_common.h"
#include "gptrt/engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gptrt::fuzz::init();
  static const std::string path = gptrt::fuzz::scratch(".onnx");
  gptrt::fuzz::write(path, data, size);
  try {
    gptrt::Network net = gptrt::Network::from_onnx(path);
    gptrt::BuildConfig c;
    c.default_max_batch = 2;
    c.default_max_seq_len = 8;
    (void)gptrt::Engine::build(net, c);
  } catch (const gptrt::Error&) {
  }
  return 0;
}
