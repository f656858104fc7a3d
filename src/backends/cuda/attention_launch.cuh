// Chooses and launches the attention kernel for a head size and a mask type.
// Included by the one file that launches them (their definitions are local to it).
#pragma once

#include <cstdint>

#include "backends/cuda/attention.cuh"
#include "backends/cuda/kernel_common.cuh"
#include "backends/cuda/launch.cuh"

namespace gptrt::cuda {
namespace {

// Launches attention_kernel with the register count the head size needs (M: the mask's type).
// Decode steps (one query per row against the cache and its flags) and packed passes take
// attention_decode_kernel (a packed pass only where packed_attention_runs).
template <typename T, typename M>
void launch_attention(const AttentionArgs& a, const Launcher& launch) {
  const size_t decode_smem = attention_decode_smem_bytes(a.e / a.heads, a.key_stride);
  const bool decode = std::is_same_v<M, uint8_t> && (a.t == 1 || a.packed) && a.kc && a.mask &&
                      a.past && decode_smem <= kAttentionDecodeMaxSmem;
  if (a.packed && !decode)
    throw Error(ErrorCode::kInternal, "a packed pass needs attention_decode_kernel");
  dim3 grid(
      static_cast<unsigned>(decode ? (a.packed ? a.rows : a.b) * a.heads : attention_blocks(a)));
  size_t smem = decode ? decode_smem : attention_smem_bytes(a.e / a.heads);
  auto go = [&](auto per_lane) {
    auto kernel = decode ? attention_decode_kernel<decltype(per_lane)::value, T>
                         : attention_kernel<decltype(per_lane)::value, T, M>;
    if (smem > 48 * 1024)
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(smem)),
            "cudaFuncSetAttribute (attention)");
    launch(kernel, grid, dim3(32 * kAttentionWarps), smem, a);
  };
  switch ((a.e / a.heads + 31) / 32) {
    case 1:
      go(std::integral_constant<int, 1>{});
      break;
    case 2:
      go(std::integral_constant<int, 2>{});
      break;
    case 3:
      go(std::integral_constant<int, 3>{});
      break;
    case 4:
      go(std::integral_constant<int, 4>{});
      break;
    default:
      go(std::integral_constant<int, 8>{});
      break;
  }
}

}  // namespace
}  // namespace gptrt::cuda
