// Linear layers on the GPU: which kernel runs each (node, rows) (the skinny tensor-core, FP32
// and streaming GEMMs, or cuBLASLt), their plans, and the launches.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/plain_gemm.cuh"
#include "backends/cuda/rows.cuh"
#include "backends/cuda/runner_impl.cuh"
#include "backends/reference/fused_ops.h"

namespace gptrt::cuda {

// Lets `kernel` take all the shared memory a block may have, less its static shared memory.
void Runner::Impl::allow_all_shared_memory(SkinnyKernel kernel) {
  cudaFuncAttributes attr{};
  check(cudaFuncGetAttributes(&attr, kernel), "cudaFuncGetAttributes");
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem_optin - attr.sharedSizeBytes)),
        "cudaFuncSetAttribute");
}

// The skinny kernel for m rows (1 <= m <= 16 * kSkinnyMaxTiles): one instantiation per eight
// rows.
Runner::Impl::SkinnyKernel Runner::Impl::skinny_kernel(int64_t m) const {
  static_assert(kSkinnyMaxTiles == 2, "one instantiation per eight rows");
  static const SkinnyKernel fp16[] = {
      skinny_linear_kernel<__half, 1, false>, skinny_linear_kernel<__half, 1, true>,
      skinny_linear_kernel<__half, 2, false>, skinny_linear_kernel<__half, 2, true>};
  static const SkinnyKernel bf16[] = {
      skinny_linear_kernel<__nv_bfloat16, 1, false>, skinny_linear_kernel<__nv_bfloat16, 1, true>,
      skinny_linear_kernel<__nv_bfloat16, 2, false>, skinny_linear_kernel<__nv_bfloat16, 2, true>};
  return (precision == Precision::kFp16 ? fp16 : bf16)[(m + 7) / 8 - 1];
}

Runner::Impl::SkinnyKernel Runner::Impl::fp32_kernel(int mr, int v) const {
  static const SkinnyKernel kernels[3][4] = {
      {skinny_fp32_kernel<1, 2>, skinny_fp32_kernel<1, 3>, skinny_fp32_kernel<1, 4>,
       skinny_fp32_kernel<1, 6>},
      {skinny_fp32_kernel<8, 2>, skinny_fp32_kernel<8, 3>, skinny_fp32_kernel<8, 4>,
       skinny_fp32_kernel<8, 6>},
      {skinny_fp32_kernel<16, 2>, skinny_fp32_kernel<16, 3>, skinny_fp32_kernel<16, 4>,
       nullptr}};  // (16 x 6 spills)
  return kernels[mr == 1 ? 0 : mr == 8 ? 1 : 2][v == 6 ? 3 : v - 2];
}

// skinny_stream_kernel for this engine's weights and MR rows (1, 8 or 16).
Runner::Impl::SkinnyKernel Runner::Impl::stream_kernel(int mr) const {
  static const SkinnyKernel kernels[3][3] = {
      {skinny_stream_kernel<float, 1>, skinny_stream_kernel<float, 8>,
       skinny_stream_kernel<float, 16>},
      {skinny_stream_kernel<__half, 1>, skinny_stream_kernel<__half, 8>,
       skinny_stream_kernel<__half, 16>},
      {skinny_stream_kernel<__nv_bfloat16, 1>, skinny_stream_kernel<__nv_bfloat16, 8>,
       skinny_stream_kernel<__nv_bfloat16, 16>}};
  const int t = precision == Precision::kFp16 ? 1 : precision == Precision::kBf16 ? 2 : 0;
  return kernels[t][mr == 1 ? 0 : mr == 8 ? 1 : 2];
}

// Switches plan `sp` (rows m, MR sp.mt) to skinny_stream_kernel where its shared memory fits
// and a block fits on an SM.
void Runner::Impl::use_stream(SkinnyPlan& sp, int64_t m, int64_t k, int64_t cols,
                              bool layer_norm) const {
  const size_t smem =
      skinny_stream_smem_bytes(static_cast<int>(m), static_cast<int>(k), layer_norm);
  if (smem > smem_optin) return;
  int per_sm = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, stream_kernel(sp.mt), 256, smem),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  if (per_sm < 1) return;
  const int64_t warps = (cols + kStreamCols - 1) / kStreamCols;  // column groups
  sp.stream = true;
  sp.smem = smem;
  sp.pitch = skinny_stream_pitch(static_cast<int>(k));
  sp.grid = static_cast<int>(std::min<int64_t>((warps + 7) / 8, int64_t{per_sm} * sm_count));
}

// The FP32 skinny kernel's plan: rows up to 16 (MR 1, 8 or 16), the fewest K splits (each lane
// holding at most 6 float4s per weight row, 4 with 16 rows) that give every SM a block, else
// the most; V (2, 3, 4 or 6) the fewest float4s that cover a lane's share of K (every float4
// past K is multiplied, as zeros).
Runner::Impl::SkinnyPlan Runner::Impl::skinny_fp32_plan(int64_t m, int64_t k, int64_t cols,
                                                        bool layer_norm) const {
  SkinnyPlan sp;
  const int max_v = m > 8 ? 4 : 6;
  if (m < 1 || m > 16 || k % 4 != 0 || k > 128 * max_v * 8 || cols >= (1 << 24)) return sp;
  auto blocks = [&](int splits) {
    return (cols + 8 / splits * kFp32Cols - 1) / (8 / splits * kFp32Cols);
  };
  for (int splits : {1, 2, 4, 8}) {
    if (k > 128 * max_v * splits) continue;
    sp.tn = splits;
    if (blocks(splits) >= sm_count) break;
  }
  int64_t per_lane = (k + 128 * sp.tn - 1) / (128 * sp.tn);  // float4s per weight row
  sp.v = per_lane <= 2 ? 2 : per_lane <= 4 ? static_cast<int>(per_lane) : 6;
  sp.mt = m == 1 ? 1 : m <= 8 ? 8 : 16;
  sp.pitch = 128 * sp.v * sp.tn;
  sp.smem = skinny_fp32_smem_bytes(static_cast<int>(m), static_cast<int>(k), sp.pitch, layer_norm);
  if (sp.smem > smem_optin) return sp;
  // As many blocks as fit on the GPU at once; each takes several column blocks if needed.
  int per_sm = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fp32_kernel(sp.mt, sp.v), 256,
                                                      sp.smem),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  sp.grid = static_cast<int>(
      std::min<int64_t>(blocks(sp.tn), static_cast<int64_t>(std::max(per_sm, 1)) * sm_count));
  sp.fp32 = true;
  sp.ok = true;
  // Many times more column blocks than fit at once (the LM head) at 9 to 16 rows: the weights
  // stream through shared memory (skinny_stream_kernel), one block per SM, where the rows
  // leave room. (On the H100, traced: the head at 12 rows 80 -> 56 µs; at 1 and 8 rows
  // skinny_fp32_kernel already reads 2.9-3.2 TB/s, and layers that take fewer passes over
  // their column blocks (QKV, FC2) ran slower streamed.)
  if (stream_mode == 1 || (stream_mode < 0 && m > 8 && blocks(sp.tn) >= 4 * sp.grid))
    use_stream(sp, m, k, cols, layer_norm);
  return sp;
}

void Runner::Impl::find_layer_norm_fusions() {
  ln_before.assign(g.nodes.size(), -1);
  ln_readers.assign(g.nodes.size(), {});
  std::vector<int> producer(g.values.size(), -1), readers(g.values.size(), 0);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (int o : g.nodes[i].outputs)
      if (o >= 0) producer[static_cast<size_t>(o)] = static_cast<int>(i);
    for (int in : g.nodes[i].inputs)
      if (in >= 0) ++readers[static_cast<size_t>(in)];
  }
  for (int o : g.outputs) ++readers[static_cast<size_t>(o)];
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& n = g.nodes[i];
    // The builder marked the layers whose LayerNorm they may absorb (passes::
    // mark_layer_norm_prologues); the plan is checked again here.
    if (n.op_type != "Linear" || n.inputs[0] < 0 || n.attr_int("layer_norm_prologue", 0) != 1)
      continue;
    int p = producer[static_cast<size_t>(n.inputs[0])];
    if (p < 0) continue;
    const ir::Node& ln = g.nodes[static_cast<size_t>(p)];
    if (ln.op_type != "LayerNormalization" || ln.inputs.size() < 3 || ln.inputs[2] < 0) continue;
    ln_before[i] = p;
    ln_readers[static_cast<size_t>(p)].push_back(i);
  }
  for (size_t l = 0; l < g.nodes.size(); ++l) {
    if (ln_readers[l].empty()) continue;
    if (static_cast<size_t>(readers[static_cast<size_t>(g.nodes[l].outputs[0])]) ==
        ln_readers[l].size())
      continue;
    for (size_t r : ln_readers[l]) ln_before[r] = -1;  // something else reads the LayerNorm
    ln_readers[l].clear();
  }
}

const Runner::Impl::SkinnyPlan& Runner::Impl::skinny_plan(size_t index, int64_t m) {
  auto key = std::make_pair(index, m);
  auto it = skinny_plans.find(key);
  if (it != skinny_plans.end()) return it->second;
  SkinnyPlan sp;
  const ir::Node& n = g.nodes[index];
  const ir::Value& wv = g.values[static_cast<size_t>(n.inputs[1])];
  int res_id = n.inputs.size() > 3 ? n.inputs[3] : -1;
  if (skinny_fp32_enabled && wv.dtype == DType::kFloat32 && n.attr_int("transB", 0) != 0 &&
      storage(n.outputs[0]) == CUDA_R_32F)
    return skinny_plans
        .emplace(key,
                 skinny_fp32_plan(m, wv.constant.dim(1), wv.constant.dim(0), ln_before[index] >= 0))
        .first->second;
  DType want = precision == Precision::kFp16 ? DType::kFloat16 : DType::kBFloat16;
  int64_t mt = (m + 15) / 16, k = wv.constant.dim(1), cols = wv.constant.dim(0);
  if (skinny_enabled && wv.dtype == want && n.attr_int("transB", 0) != 0 && k % 8 == 0 && mt >= 1 &&
      mt <= kSkinnyMaxTiles && k < (1 << 24) && cols < (1 << 24) &&
      (res_id < 0 || storage(res_id) == CUDA_R_32F) &&
      skinny_smem_bytes(static_cast<int>(m), static_cast<int>(k), ln_before[index] >= 0) <=
          smem_optin) {
    sp.ok = true;
    sp.mt = static_cast<int>(mt);
    sp.smem = skinny_smem_bytes(static_cast<int>(m), static_cast<int>(k), ln_before[index] >= 0);
    // The narrowest column group that lets every block own one group with all blocks resident
    // at once (two per SM where they fit: on the H100, commit 6b5d7bd, decode steps' QKV and
    // FC1 ran 12% and 21% faster in 144 and 192 blocks than in 72 and 96 of twice the width);
    // the widest, with as many blocks as fit, when even that is too many groups (the LM head).
    auto groups = [&](int tn) { return (cols + 8 * tn - 1) / (8 * tn); };
    int per_sm = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, skinny_kernel(m), 256, sp.smem),
          "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    const int64_t resident = static_cast<int64_t>(std::max(per_sm, 1)) * sm_count;
    sp.tn = 8;
    for (int tn : {1, 2, 4})
      if (groups(tn) <= resident) {
        sp.tn = tn;
        break;
      }
    if (forced_tn) sp.tn = forced_tn;
    sp.grid = static_cast<int>(std::min<int64_t>(groups(sp.tn), resident));
    // (The blocks per SM above are counted at the whole ring's size; the ring itself is only
    // as deep as a block's items, so that blocks fit beside the previous kernel's.)
    sp.ring = skinny_ring_stages(static_cast<int>(k), static_cast<int>(cols), sp.tn, sp.grid);
    sp.smem =
        skinny_smem_bytes(static_cast<int>(m), static_cast<int>(k), ln_before[index] >= 0, sp.ring);
    // The LM head (a fused LayerNorm, so FP32 rows, and more than two column groups per
    // resident block) at one row, a decode step's: skinny_stream_kernel, whose warps read 512
    // contiguous bytes of a weight row at a time (on the H100, one binary, interleaved: 1x1
    // 0.145 -> 0.141 ms, decode at batch 1 0.176 -> 0.166 ms per token; at 8 rows and more its
    // FP32 FMAs lose to the tensor cores: 8x1 0.158 -> 0.162 ms, 1x12 0.178 -> 0.195 ms).
    // GPTRT_CUDA_STREAM=1 takes it for every such layer up to 16 rows (tests).
    if (ln_before[index] >= 0 && m <= 16 &&
        (stream_mode == 1 || (stream_mode < 0 && m == 1 && groups(8) > 2 * resident))) {
      sp.mt = m == 1 ? 1 : m <= 8 ? 8 : 16;
      use_stream(sp, m, k, cols, true);
      if (!sp.stream) sp.mt = static_cast<int>(mt);
    }
  }
  return skinny_plans.emplace(key, sp).first->second;
}

// True when LayerNorm node `l` is left to the skinny kernels of its readers (rows: the rows
// each reader runs).
bool Runner::Impl::layer_norm_fused(size_t l, int64_t rows, int64_t head_rows) {
  if (ln_readers[l].empty()) return false;
  for (size_t r : ln_readers[l])
    if (!skinny_plan(r, group_rows(r, g.nodes[r].outputs[0] == g.outputs[0] ? head_rows : rows)).ok)
      return false;
  return true;
}

// The rows linear node `index` of `rows` rows is planned for: where groups apply, the most
// (a multiple of 8 up to row_group) that its skinny kernel takes; otherwise `rows`.
int64_t Runner::Impl::group_rows(size_t index, int64_t rows) {
  if (row_group == 0 || rows <= row_group) return rows;
  for (int64_t group = row_group; group >= 8; group -= 8)
    if (skinny_plan(index, group).ok) return group;
  return rows;
}

// The output row length a cuBLASLt GEMM writes at: its columns, or for an FP16/BF16 layer
// stored [N, K] whose N is not a multiple of 8 (the vocabulary's 50257 logits), N rounded up:
// the GEMM then computes that many columns (the weights' zero rows, see DeviceWeights) at an
// aligned pitch, which cuBLASLt's fast kernels need. On the H100 (commit bcdb160) the FP16 LM
// head at 96 rows took 122 µs with N = 50257 and 38 µs with 50264; at 256 rows 217 and 49 µs
// (FP32 was compute-bound either way: it keeps N). Such GEMMs write into `pitched`,
// kPitchedRows rows at a time, and compact_rows_kernel moves the rows into place. Not with a
// bias or a residual (they have N values a row) or an exact GELU.
int64_t Runner::Impl::pitched_cols(const ir::Node& n) const {
  const ir::Value& w = g.values[static_cast<size_t>(n.inputs[1])];
  const bool trans = n.attr_int("transB", 0) != 0;
  const int64_t cols = w.constant.dim(trans ? 0 : 1);
  const bool bias = n.inputs.size() > 2 && n.inputs[2] >= 0;
  const bool residual = n.inputs.size() > 3 && n.inputs[3] >= 0;
  if (!trans || w.dtype == DType::kFloat32 || bias || residual ||
      n.attr_string("activation", "") == "gelu_erf")
    return cols;
  return (cols + 7) / 8 * 8;
}

// Whether linear node `index` at m rows runs on a skinny kernel (with its LayerNorm when
// `ln_fused`).
bool Runner::Impl::skinny_runs(size_t index, int64_t m, const ir::Node& n, bool ln_fused) {
  const SkinnyPlan& sp = skinny_plan(index, m);
  return sp.ok && (sp.fp32 || ln_fused || storage(n.inputs[0]) != CUDA_R_32F);
}

// Linear node `index` on its skinny kernel for m rows of x (the LayerNorm `ln`'s input when
// set) and the residual's rows (or null), into y.
void Runner::Impl::skinny(size_t index, const ir::Node& n, int64_t m, void* y, const void* x,
                          const ir::Node* ln, const float* residual) {
  const SkinnyPlan& sp = skinny_plan(index, m);
  const ir::Value& w = g.values[static_cast<size_t>(n.inputs[1])];
  int bias_id = n.inputs.size() > 2 ? n.inputs[2] : -1;
  SkinnyArgs a{};
  a.x = x;
  if (ln) {
    a.ln_gamma = static_cast<const float*>(value_ptr(ln->inputs[1]));
    a.ln_beta = static_cast<const float*>(value_ptr(ln->inputs[2]));
    a.ln_eps = ln->attr_float("epsilon", 1e-5f);
  }
  a.w = value_ptr(n.inputs[1]);
  a.bias = bias_id >= 0 ? value_ptr(bias_id) : nullptr;
  a.bias_half = bias_id >= 0 && g.values[static_cast<size_t>(bias_id)].dtype != DType::kFloat32;
  a.residual = residual;
  a.y = y;
  a.y_half = storage(n.outputs[0]) != CUDA_R_32F;
  a.act = reference::activation_from_name(n.attr_string("activation", ""));
  a.m = static_cast<int>(m);
  a.n = static_cast<int>(w.constant.dim(0));
  a.k = static_cast<int>(w.constant.dim(1));
  a.row_stride = sp.fp32 || sp.stream ? sp.pitch : skinny_row_stride(a.k);
  a.tn = sp.tn;
  a.ring_stages = sp.ring;
  if (sp.stream) {
    if (!sp.fp32 && !ln)  // (its rows must be FP32: planned only with a LayerNorm fused)
      throw Error(ErrorCode::kInternal,
                  n.describe() + ": the streaming GEMM was planned without its LayerNorm");
    launch(stream_kernel(sp.mt), dim3(static_cast<unsigned>(sp.grid)), dim3(256), sp.smem, a);
    gemm_kind = std::string(sp.fp32 ? "skinny FP32 stream" : "skinny stream") + (ln ? "+LN" : "");
    return;
  }
  if (sp.fp32) {
    launch(fp32_kernel(sp.mt, sp.v), dim3(static_cast<unsigned>(sp.grid)), dim3(256), sp.smem, a);
    gemm_kind = ln ? "skinny FP32+LN" : "skinny FP32";
    return;
  }
  launch(skinny_kernel(m), dim3(static_cast<unsigned>(sp.grid)), dim3(256), sp.smem, a);
  gemm_kind = ln ? "skinny+LN" : "skinny";
}

// Linear node `n` on plain_gemm_kernel: m rows of x (`x_in`, else its input) into y, with its
// bias, activation and residual in the epilogue.
void Runner::Impl::plain_linear(const ir::Node& n, int64_t m, void* y, const void* x_in) {
  const ir::Value& w = g.values[static_cast<size_t>(n.inputs[1])];
  const bool nk = n.attr_int("transB", 0) != 0;
  const int bias_id = n.inputs.size() > 2 ? n.inputs[2] : -1;
  const int res_id = n.inputs.size() > 3 ? n.inputs[3] : -1;
  auto of_type = [](cudaDataType_t t) {
    return t == CUDA_R_16F ? Storage::kF16 : t == CUDA_R_16BF ? Storage::kBf16 : Storage::kF32;
  };
  PlainGemmArgs a;
  a.x = x_in ? x_in : value_ptr(n.inputs[0]);
  a.x_type = of_type(storage(n.inputs[0]));
  a.w = value_ptr(n.inputs[1]);
  a.w_type = of_type(cuda_type(w.dtype));
  a.w_nk = nk;
  if (bias_id >= 0) {
    a.bias = value_ptr(bias_id);
    a.bias_type = of_type(cuda_type(g.values[static_cast<size_t>(bias_id)].dtype));
  }
  a.residual = res_id >= 0 ? value_ptr(res_id) : nullptr;
  a.y = y;
  a.y_type = of_type(storage(n.outputs[0]));
  if (a.residual && storage(res_id) != storage(n.outputs[0]))
    throw Error(ErrorCode::kInternal, n.describe() + ": its residual is not stored as its output");
  a.act = reference::activation_from_name(n.attr_string("activation", ""));
  a.m = static_cast<int>(m);
  a.k = static_cast<int>(w.constant.dim(nk ? 1 : 0));
  a.n = static_cast<int>(w.constant.dim(nk ? 0 : 1));
  const dim3 grid(static_cast<unsigned>((a.n + kPlainTile - 1) / kPlainTile),
                  static_cast<unsigned>((m + kPlainTile - 1) / kPlainTile));
  launch(plain_gemm_kernel, grid, dim3(kPlainThreads), 0, a);
  gemm_kind = "plain FP32";
}

// y[m, N] = act(x[m, K] @ W + bias) + residual. The skinny kernel where its plan says so (x
// being the input of the LayerNorm before this node when `ln_fused`); otherwise
// plain_gemm_kernel where plain_gemms, else one cuBLASLt call (cublaslt_linear). `x_in`
// overrides x.
void Runner::Impl::linear(size_t index, const ir::Node& n, int64_t m, void* y, const void* x_in,
                          bool ln_fused) {
  // One skinny call, or one per row group (see row_group) on its rows of x, y and the residual.
  const int64_t group = group_rows(index, m);
  if (skinny_runs(index, group, n, ln_fused)) {
    const ir::Node* ln = ln_fused ? &g.nodes[static_cast<size_t>(ln_before[index])] : nullptr;
    const int x_id = ln ? ln->inputs[0] : n.inputs[0];
    const auto* x = static_cast<const char*>(x_in ? x_in : value_ptr(x_id));
    const ir::Value& w = g.values[static_cast<size_t>(n.inputs[1])];
    const int64_t k = w.constant.dim(1), cols = w.constant.dim(0);  // (stored [N, K])
    const int64_t x_size = ln || storage(x_id) == CUDA_R_32F ? 4 : 2;
    const int64_t y_size = storage(n.outputs[0]) == CUDA_R_32F ? 4 : 2;
    const int res_id = n.inputs.size() > 3 ? n.inputs[3] : -1;
    auto* res = static_cast<const float*>(value_ptr(res_id));
    for (int64_t r0 = 0; r0 < m; r0 += group)
      skinny(index, n, std::min(group, m - r0), static_cast<char*>(y) + r0 * cols * y_size,
             x + r0 * k * x_size, ln, res ? res + r0 * cols : nullptr);
    return;
  }
  if (plain_gemms)
    plain_linear(n, m, y, x_in);
  else
    cublaslt_linear(index, n, m, y, x_in);
}

}  // namespace gptrt::cuda
