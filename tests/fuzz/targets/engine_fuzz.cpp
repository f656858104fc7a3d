// Engine loader: the input is an engine file whose checksum the harness repairs (so mutations
// reach the plan, not just the checksum check). Engine::load must refuse every invalid plan with
// gptrt::Error; a plan it accepts must run one forward pass at its profile's min shapes without
// reading outside any weight (ASan) or failing in any way but gptrt::Error.
#include <cstring>
#include <map>
#include <vector>

#include "core/bytes.h"
#include "fuzz_common.h"
#include "gptrt/engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gptrt::fuzz::init();
  static const std::string path = gptrt::fuzz::scratch(".engine");
  std::vector<uint8_t> bytes(data, data + size);
  constexpr size_t kHeader = 128, kChecksumAt = 112;
  if (bytes.size() >= kHeader) {
    uint64_t h = gptrt::checksum64(bytes.data(), kChecksumAt);
    h = gptrt::checksum64(bytes.data() + kHeader, bytes.size() - kHeader, h);
    std::memcpy(bytes.data() + kChecksumAt, &h, 8);
  }
  gptrt::fuzz::write(path, bytes.data(), bytes.size());
  try {
    auto engine = gptrt::Engine::load(path);
    const gptrt::EngineInfo& info = engine->info();
    std::map<std::string, gptrt::Tensor> inputs;
    for (const gptrt::TensorDesc& d : info.model.inputs) {
      const gptrt::ShapeRange* r = info.profiles.at(0).find(d.name);
      if (!r) return 0;
      inputs[d.name] = gptrt::Tensor(d.dtype, r->min);  // zeros: valid ids, masked-out rows
    }
    auto ctx = engine->create_execution_context(1);
    (void)ctx->execute(inputs);
  } catch (const gptrt::Error&) {
  }
  return 0;
}
