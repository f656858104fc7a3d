// The cpu backend's KV-cache decoder over slots.
#pragma once

#include <memory>

#include "backends/backend.h"
#include "backends/cpu/gemm.h"

namespace gptrt::cpu {

/// A slot decoder over `plan` (the lowered, recognised GPT-2 decoder) on `threads` threads.
std::unique_ptr<backends::SlotDecoder> make_decoder(const backends::PlanRef& plan,
                                                    const backends::DecoderShape& shape, Isa isa,
                                                    int threads);

}  // namespace gptrt::cpu
