// The QKV projection and its attention as one kernel (qkv_attention_kernel), where it can run.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/runner_impl.cuh"

namespace gptrt::cuda {

void Runner::Impl::find_attention_fusions() {
  attention_after.assign(g.nodes.size(), -1);
  std::vector<int> readers(g.values.size(), 0);
  for (const ir::Node& n : g.nodes)
    for (int in : n.inputs)
      if (in >= 0) ++readers[static_cast<size_t>(in)];
  for (int o : g.outputs) ++readers[static_cast<size_t>(o)];
  for (size_t i = 0; i + 1 < g.nodes.size(); ++i) {
    const ir::Node& n = g.nodes[i];
    const ir::Node& next = g.nodes[i + 1];
    // Marked by the builder (passes::mark_attention_projections), checked again here.
    if (n.op_type == "Linear" && n.attr_int("attention_follows", 0) == 1 &&
        next.op_type == "Attention" && !next.inputs.empty() && next.inputs[0] == n.outputs[0] &&
        readers[static_cast<size_t>(n.outputs[0])] == 1)
      attention_after[i] = static_cast<int>(i + 1);
  }
}

// Linear node `index` (the QKV projection, m = b * t rows) and the Attention node after it as
// one qkv_attention_kernel, if it can run them: sm_90 clusters, an FP16/BF16 skinny plan of one
// row tile with the LayerNorm fused, heads of 64, K a multiple of 32 up to 2048, no residual or
// activation, and shared memory (the cached keys' slices included) within what a block may take
// beside the kernels around it. Returns whether it launched.
bool Runner::Impl::qkv_attention(size_t index, const ir::Node& n, int64_t b, int64_t t, bool decode,
                                 bool with_mask, size_t layer) {
  if (packed_rows > 0 || !fused_attention_enabled || sm_major < 9 || !skinny_enabled ||
      !launch.overlap || attention_after[index] < 0 || b * t > 16 ||
      group_rows(index, b * t) != b * t || ln_before[index] < 0 ||
      !layer_norm_fused(static_cast<size_t>(ln_before[index]), b * t, b * t))
    return false;
  const SkinnyPlan& sp = skinny_plan(index, b * t);
  if (!sp.ok || sp.fp32 || sp.stream) return false;
  const ir::Node& attn = g.nodes[static_cast<size_t>(attention_after[index])];
  const ir::Value& w = g.values[static_cast<size_t>(n.inputs[1])];
  const int64_t e = g.values[static_cast<size_t>(attn.outputs[0])].shape.dims.back().value;
  const int64_t heads = attn.attr_int("num_heads", 1), k = w.constant.dim(1);
  const int bias_id = n.inputs.size() > 2 ? n.inputs[2] : -1;
  if (heads * kQkvHead != e || w.constant.dim(0) != 3 * e || k % 32 != 0 ||
      k > 32 * kQkvRanks * kQkvMaxSlots || (n.inputs.size() > 3 && n.inputs[3] >= 0) ||
      !n.attr_string("activation", "").empty() || storage(attn.outputs[0]) == CUDA_R_32F)
    return false;
  const int64_t key_stride = decode ? kv.cache_s : t;
  const QkvAttentionSmem sz = qkv_attention_smem(static_cast<int>(b * t), static_cast<int>(k),
                                                 static_cast<int>(b), static_cast<int>(key_stride));
  if (sz.total > kQkvAttentionMaxSmem || b * t * key_stride > kQkvAttentionMaxPairs) return false;
  const ir::Node& ln = g.nodes[static_cast<size_t>(ln_before[index])];
  QkvAttentionArgs a{};
  SkinnyArgs& l = a.lin;
  l.x = value_ptr(ln.inputs[0]);
  l.ln_gamma = static_cast<const float*>(value_ptr(ln.inputs[1]));
  l.ln_beta = static_cast<const float*>(value_ptr(ln.inputs[2]));
  l.ln_eps = ln.attr_float("epsilon", 1e-5f);
  l.w = value_ptr(n.inputs[1]);
  l.bias = bias_id >= 0 ? value_ptr(bias_id) : nullptr;
  l.bias_half = bias_id >= 0 && g.values[static_cast<size_t>(bias_id)].dtype != DType::kFloat32;
  l.m = static_cast<int>(b * t);
  l.n = static_cast<int>(3 * e);
  l.k = static_cast<int>(k);
  l.row_stride = skinny_row_stride(l.k);
  a.b = static_cast<int>(b);
  a.t = static_cast<int>(t);
  a.key_stride = static_cast<int>(key_stride);
  a.e = static_cast<int>(e);
  a.scale = attn.attr_float("scale", 1.f);
  a.out = value_ptr(attn.outputs[0]);
  if (decode) {
    a.kc = kv.k[layer];
    a.vc = kv.v[layer];
    a.mask = kv.valid;
    a.past = kv.past;
    a.past_early = layer > 0;  // (the step's first kernel writes them)
  } else {                     // (the mask was copied in before the pass)
    a.mask = with_mask && attn.inputs.size() > 1 && attn.inputs[1] >= 0 ? mask : nullptr;
    a.past_early = 1;
  }
  const dim3 grid(static_cast<unsigned>(heads * kQkvRanks)), block(256);
  const bool hi = b * t > 8;
  bool launched = false;
  typed(attn.outputs[0], [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, float>) {
      auto kernel = decode ? (hi ? qkv_attention_kernel<T, uint8_t, true>
                                 : qkv_attention_kernel<T, uint8_t, false>)
                           : (hi ? qkv_attention_kernel<T, int64_t, true>
                                 : qkv_attention_kernel<T, int64_t, false>);
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(sz.total)),
            "cudaFuncSetAttribute (QKV attention)");
      // Clusters of 8 that the GPU cannot place at this shared memory size fall back.
      cudaLaunchConfig_t config{};
      cudaLaunchAttribute attr[1];
      attr[0].id = cudaLaunchAttributeClusterDimension;
      attr[0].val.clusterDim.x = kQkvRanks;
      attr[0].val.clusterDim.y = attr[0].val.clusterDim.z = 1;
      config.gridDim = grid;
      config.blockDim = block;
      config.dynamicSmemBytes = sz.total;
      config.attrs = attr;
      config.numAttrs = 1;
      int clusters = 0;
      if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess ||
          clusters < 1) {
        cudaGetLastError();
        return;
      }
      launch.clustered(kernel, grid, block, sz.total, kQkvRanks, a);
      launched = true;
    }
  });
  if (launched) gemm_kind = "skinny+LN+attention";
  return launched;
}

}  // namespace gptrt::cuda
