// Generation on the GPU: the KV cache, prompt passes and decode steps (one captured CUDA graph
// per kind of result, several greedy steps per graph), and the Decoder's public methods.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/argmax.cuh"
#include "backends/cuda/runner_impl.cuh"
#include "backends/reference/fused_ops.h"

namespace gptrt::cuda {
namespace {

// Block r moves row r of one layer's cache [b, cols, e]: column c gets column from[r][c], for c
// from 0 up to `used` or the row's first -1. Sources increase with c and c <= from[r][c], so each
// thread, moving its own elements in column order, reads every column before it is written.
__global__ void gather_columns_kernel(float* cache, const int32_t* from, int64_t cols, int64_t used,
                                      int64_t e) {
  float* row = cache + blockIdx.x * cols * e;
  const int32_t* src = from + blockIdx.x * cols;
  for (int64_t c = 0; c < used; ++c) {
    const int64_t f = src[c];
    if (f < 0) break;
    if (f == c) continue;
    for (int64_t k = threadIdx.x; k < e; k += blockDim.x) row[c * e + k] = row[f * e + k];
  }
}

}  // namespace

void Runner::Impl::free_kv() {
  for (cudaGraphExec_t& e : kv.step_graphs) {
    if (e) cudaGraphExecDestroy(e);
    e = nullptr;
  }
  for (auto& [k, e] : kv.chunk_graphs) cudaGraphExecDestroy(e);
  kv.chunk_graphs.clear();
  for (auto& [k, e] : kv.packed_graphs) cudaGraphExecDestroy(e);
  kv.packed_graphs.clear();
  cudaFree(kv.chunk_picks);
  kv.chunk_picks = nullptr;
  cudaFree(kv.from);
  kv.from = nullptr;
  cudaFree(kv.at);
  kv.at = nullptr;
  cudaFree(kv.last_of);
  kv.last_of = nullptr;
  kv.single_steps = 0;
  for (float* p : kv.k) cudaFree(p);
  for (float* p : kv.v) cudaFree(p);
  kv.k.clear();
  kv.v.clear();
  cudaFree(kv.valid);
  cudaFree(kv.past);
  cudaFree(kv.last);
  cudaFree(kv.picks);
  kv.picks = nullptr;
  cudaFree(kv.part_v);
  cudaFree(kv.part_i);
  cudaFree(kv.done);
  kv.part_v = nullptr;
  kv.part_i = nullptr;
  kv.done = nullptr;
  kv.batch = kv.cache_s = kv.prompt = 0;  // (a failed reserve leaves nothing to reuse)
  kv.valid = nullptr;
  kv.past = nullptr;
  kv.last = nullptr;
}

// Generation for `b` rows of up to `cache_s` positions, prompts of up to `prompt` tokens: the
// KV cache, the activation arena for [b, prompt], the input and logits buffers (at most once per
// generate call, never per token; kept, with the decode-step graph, for the next call of the
// same batch and cache length whose prompt fits).
void Runner::Impl::reserve(int64_t b, int64_t cache_s, int64_t prompt) {
  if (kv.batch == b && kv.cache_s == cache_s && prompt <= kv.prompt) return;
  cudaStreamSynchronize(stream);
  free_kv();
  drop_graphs();
  const ir::Value& ids_v = g.values[static_cast<size_t>(g.nodes.front().inputs[0])];
  std::map<std::string, int64_t> dim_max;
  if (!ids_v.shape.dims[0].is_known()) dim_max[ids_v.shape.dims[0].symbol] = b;
  if (!ids_v.shape.dims[1].is_known()) dim_max[ids_v.shape.dims[1].symbol] = prompt;
  ir::MemoryPlan p = ir::plan_memory(g, dim_max, [](const ir::Node&) { return true; });
  int64_t e = 0, layers = 0;
  for (const ir::Node& n : g.nodes) {
    if (n.op_type != "Attention") continue;
    e = g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value;
    ++layers;
  }
  // The cache and what a larger arena adds (the present one is freed first), checked whole
  // before either is allocated.
  check_memory_plan({{"K and V cache", static_cast<size_t>(2 * layers * b * cache_s * e * 4)},
                     {"more activation arena",
                      static_cast<size_t>(p.total > plan.total ? p.total - plan.total : 0)}},
                    "generation at batch " + std::to_string(b) + " and " + std::to_string(cache_s) +
                        " positions");
  if (p.total > plan.total) {
    cudaFree(arena);
    arena = nullptr;
    device_alloc(reinterpret_cast<void**>(&arena), static_cast<size_t>(p.total),
                 "activation arena");
  }
  if (p.total > 0) plan = p;
  for (int64_t l = 0; l < layers; ++l) {
    float* k = nullptr;
    float* v = nullptr;
    // (Each kept as soon as it exists: free_kv releases what a refusal leaves.)
    device_alloc(reinterpret_cast<void**>(&k), static_cast<size_t>(b * cache_s * e * 4), "K cache");
    kv.k.push_back(k);
    device_alloc(reinterpret_cast<void**>(&v), static_cast<size_t>(b * cache_s * e * 4), "V cache");
    kv.v.push_back(v);
  }
  check(cudaMalloc(reinterpret_cast<void**>(&kv.valid), static_cast<size_t>(b * cache_s)),
        "cudaMalloc (padding flags)");
  check(cudaMalloc(reinterpret_cast<void**>(&kv.past), sizeof(int64_t)), "cudaMalloc (past)");
  check(cudaMalloc(&kv.last, static_cast<size_t>(b * e * 4)), "cudaMalloc (last rows)");
  check(cudaMalloc(reinterpret_cast<void**>(&kv.picks), static_cast<size_t>(b * 8)),
        "cudaMalloc (picks)");
  check(cudaMalloc(reinterpret_cast<void**>(&kv.chunk_picks),
                   static_cast<size_t>(kMaxDecodeSteps * b * 8)),
        "cudaMalloc (picks of several steps)");
  check(cudaMalloc(reinterpret_cast<void**>(&kv.from), static_cast<size_t>(b * cache_s) * 4),
        "cudaMalloc (column sources)");
  check(cudaMalloc(reinterpret_cast<void**>(&kv.at), static_cast<size_t>(b * prompt) * 4),
        "cudaMalloc (packed token places)");
  check(cudaMalloc(reinterpret_cast<void**>(&kv.last_of), static_cast<size_t>(b) * 4),
        "cudaMalloc (packed rows' last tokens)");
  check(cudaMalloc(reinterpret_cast<void**>(&kv.part_v),
                   static_cast<size_t>(b * kArgmaxParts) * sizeof(float)),
        "cudaMalloc (argmax parts)");
  check(cudaMalloc(reinterpret_cast<void**>(&kv.part_i),
                   static_cast<size_t>(b * kArgmaxParts) * sizeof(int64_t)),
        "cudaMalloc (argmax parts)");
  check(cudaMalloc(reinterpret_cast<void**>(&kv.done), static_cast<size_t>(b) * sizeof(unsigned)),
        "cudaMalloc (argmax counts)");
  check(cudaMemsetAsync(kv.done, 0, static_cast<size_t>(b) * sizeof(unsigned), stream),
        "cudaMemsetAsync");
  kv.batch = b;
  kv.cache_s = cache_s;
  kv.prompt = prompt;
  int64_t rows = b * prompt;
  reserve_row_buffers(rows);
  if (rows > io_elems) {
    for (int64_t** buf : {&ids, &mask, &pos}) {
      cudaFree(*buf);
      *buf = nullptr;
      int64_t cap = 0;
      grow(buf, &cap, rows * 8, false);
    }
    io_elems = rows;
  }
  int64_t vocab = g.values[static_cast<size_t>(g.outputs[0])].shape.dims.back().value;
  grow(&out, &out_bytes, b * vocab * 4, false);
  grow(&pinned_out, &pinned_out_bytes, b * vocab * 4, true);
  // ids, positions, past, padding flags, then the picks of up to kMaxDecodeSteps steps (8-byte
  // aligned).
  grow(&pinned_in, &pinned_in_bytes,
       rows * 16 + 8 + (b * cache_s + 7) / 8 * 8 + kMaxDecodeSteps * b * 8, true);
}

// One generation step: `t` tokens per row at cache positions past..past+t-1; the last
// position's logits [b, vocab] into `logits` and/or each row's argmax into `argmax`. Decode
// steps (t = 1) replay one CUDA graph. With `steps` > 1 (t = 1, greedy: argmax only, at most
// kMaxDecodeSteps), that many decode steps in one graph, each step's inputs made on the GPU
// from the picks of the one before (chunk_advance_kernel); argmax gets [steps][b].
void Runner::Impl::decode_step(const int64_t* host_ids, const int64_t* host_pos,
                               const uint8_t* host_valid, int64_t t, int64_t past,
                               std::vector<float>* logits, int64_t* argmax, int64_t steps) {
  if (steps < 1 || steps > kMaxDecodeSteps || (steps > 1 && (t != 1 || logits || !argmax)))
    throw Error(ErrorCode::kInternal, "decode_step: " + std::to_string(steps) +
                                          " steps at once need t = 1 and greedy picks only");
  int64_t b = kv.batch, rows = packed_rows > 0 ? packed_rows : b * t;
  auto* in = static_cast<int64_t*>(pinned_in);
  std::memcpy(in, host_ids, static_cast<size_t>(rows * 8));
  std::memcpy(in + rows, host_pos, static_cast<size_t>(rows * 8));
  in[2 * rows] = past;
  auto* flags = reinterpret_cast<uint8_t*>(in + 2 * rows + 1);
  std::memcpy(flags, host_valid, static_cast<size_t>(b * kv.cache_s));
  int64_t vocab = g.values[static_cast<size_t>(g.outputs[0])].shape.dims.back().value;
  auto* picks_host = static_cast<int64_t*>(pinned_in) + 2 * rows + 1 + (b * kv.cache_s + 7) / 8;
  // The step's work on the stream: the forward pass, its embedding reading the inputs from the
  // mapped pinned buffer where the host memory is mapped (else a copy each first), the picks
  // (written straight into mapped host memory) and/or the logits back.
  if (mapped_for != pinned_in) {  // once per pinned buffer, not per step
    mapped_for = pinned_in;
    mapped_in = nullptr;
    if (cudaHostGetDevicePointer(reinterpret_cast<void**>(&mapped_in), pinned_in, 0) != cudaSuccess)
      mapped_in = nullptr;
    cudaGetLastError();  // (an unmapped buffer only means the copies)
  }
  int64_t* in_dev = mapped_in;
  const bool mapped = in_dev != nullptr;
  int64_t* picks_dev = mapped ? in_dev + (picks_host - in) : kv.picks;
  auto inputs = [&] {
    if (mapped) {
      launch.after_copy = true;  // the first work of the graph or step: a plain launch
      step_in = in_dev;          // (read by step_embedding_kernel)
    } else {
      check(cudaMemcpyAsync(ids, in, static_cast<size_t>(rows * 8), cudaMemcpyHostToDevice, stream),
            "H2D ids");
      check(cudaMemcpyAsync(pos, in + rows, static_cast<size_t>(rows * 8), cudaMemcpyHostToDevice,
                            stream),
            "H2D positions");
      check(cudaMemcpyAsync(kv.past, in + 2 * rows, 8, cudaMemcpyHostToDevice, stream), "H2D past");
      check(cudaMemcpyAsync(kv.valid, flags, static_cast<size_t>(b * kv.cache_s),
                            cudaMemcpyHostToDevice, stream),
            "H2D flags");
      launch.after_copy = true;
    }
  };
  auto enqueue = [&] {
    inputs();
    forward(b, t, true, false, true);
    step_in = nullptr;
    if (argmax) {
      launch(argmax_kernel, dim3(kArgmaxParts, static_cast<unsigned>(b)), dim3(kArgmaxThreads), 0,
             out, vocab, picks_dev, kv.part_v, kv.part_i, kv.done);
      if (!mapped)
        check(cudaMemcpyAsync(picks_host, kv.picks, static_cast<size_t>(b * 8),
                              cudaMemcpyDeviceToHost, stream),
              "D2H picks");
    }
    if (logits)
      check(cudaMemcpyAsync(pinned_out, out, static_cast<size_t>(b * vocab * 4),
                            cudaMemcpyDeviceToHost, stream),
            "D2H logits");
  };
  auto enqueue_steps = [&] {  // (steps > 1)
    inputs();
    for (int64_t i = 0; i < steps; ++i) {
      if (i > 0) {
        launch(chunk_advance_kernel, dim3(1), dim3(256), 0, kv.chunk_picks + (i - 1) * b, b,
               kv.cache_s, ids, pos, kv.past, kv.valid);
        step_in = nullptr;  // (the embedding reads ids and pos)
      }
      forward(b, 1, true, false, true);
      launch(argmax_kernel, dim3(kArgmaxParts, static_cast<unsigned>(b)), dim3(kArgmaxThreads), 0,
             out, vocab, kv.chunk_picks + i * b, kv.part_v, kv.part_i, kv.done);
    }
    step_in = nullptr;
    check(cudaMemcpyAsync(picks_host, kv.chunk_picks, static_cast<size_t>(steps * b * 8),
                          cudaMemcpyDeviceToHost, stream),
          "D2H picks");
  };
  const int kind = (argmax ? 2 : 0) + (logits ? 1 : 0);
  if (packed_rows > 0 && use_graphs && !kv.packed_graphs.count({packed_rows, t, kind}) &&
      kv.packed_graphs.size() >= kMaxPackedGraphs) {  // (a bound on what they hold)
    for (auto& [key, e] : kv.packed_graphs) cudaGraphExecDestroy(e);
    kv.packed_graphs.clear();
  }
  // Decode steps, and packed passes (of as many shapes as the scheduler's joins make: a few
  // dozen), replay graphs, captured on first use, one per kind of result: launched kernel by
  // kernel a pass cost 0.72-0.78 ms whatever its rows (64 streams on the H100).
  if ((t == 1 || packed_rows > 0) && use_graphs) {
    cudaGraphExec_t& exec = packed_rows > 0 ? kv.packed_graphs[{packed_rows, t, kind}]
                            : steps > 1     ? kv.chunk_graphs[steps]
                                            : kv.step_graphs[kind];
    if (!exec) {
      cudaGraph_t graph = nullptr;
      check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
            "cudaStreamBeginCapture");
      if (steps > 1)
        enqueue_steps();
      else
        enqueue();
      check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
      check(cudaGraphInstantiateWithFlags(&exec, graph, 0), "cudaGraphInstantiate");
      cudaGraphDestroy(graph);
    }
#ifdef GPTRT_CUDA_TRACE
    const bool tracing = trace_begin();
#endif
    check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
#ifdef GPTRT_CUDA_TRACE
    if (tracing) trace_end();
#endif
  } else if (steps > 1) {
    enqueue_steps();
  } else {
    enqueue();
  }
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  if (t == 1 && steps == 1) ++kv.single_steps;
  if (argmax) std::memcpy(argmax, picks_host, static_cast<size_t>(steps * b * 8));
  if (logits)
    logits->assign(static_cast<const float*>(pinned_out),
                   static_cast<const float*>(pinned_out) + b * vocab);
}

void Runner::Impl::packed_step(const int64_t* host_ids, const int64_t* host_pos, const int32_t* at,
                               const int32_t* last, int64_t rows, const uint8_t* host_valid,
                               int64_t t, int64_t past, std::vector<float>* logits,
                               int64_t* argmax) {
  const int64_t b = kv.batch;
  if (rows < 1 || rows > b * t || t > kv.prompt)
    throw Error(ErrorCode::kInternal, "packed_step: " + std::to_string(rows) + " tokens for " +
                                          std::to_string(b) + " rows of at most " +
                                          std::to_string(t) + " tokens");
  int64_t d = 0;
  for (const ir::Node& n : g.nodes)
    if (n.op_type == "Attention")
      d = g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value /
          n.attr_int("num_heads", 1);
  if (t == 1 || !packed_enabled || !packed_attention_runs(d, kv.cache_s)) {  // padded to [b, t]
    std::vector<int64_t> ids_bt(static_cast<size_t>(b * t), 0), pos_bt(ids_bt.size(), 0);
    for (int64_t i = 0; i < rows; ++i) {
      ids_bt[static_cast<size_t>(at[i])] = host_ids[i];
      pos_bt[static_cast<size_t>(at[i])] = host_pos[i];
    }
    decode_step(ids_bt.data(), pos_bt.data(), host_valid, t, past, logits, argmax);
    return;
  }
  // The tokens rounded up to a multiple of kPackedRowStep with fillers (id 0 at position 0,
  // place -1: attention gives them zeros and caches nothing), so that a few dozen graphs serve
  // every pass the scheduler makes.
  const int64_t padded =
      std::min(b * kv.prompt, (rows + kPackedRowStep - 1) / kPackedRowStep * kPackedRowStep);
  packed_ids.assign(host_ids, host_ids + rows);
  packed_pos.assign(host_pos, host_pos + rows);
  packed_at.assign(at, at + rows);
  packed_ids.resize(static_cast<size_t>(padded), 0);
  packed_pos.resize(static_cast<size_t>(padded), 0);
  packed_at.resize(static_cast<size_t>(padded), -1);
  check(cudaMemcpyAsync(kv.at, packed_at.data(), static_cast<size_t>(padded) * 4,
                        cudaMemcpyHostToDevice, stream),
        "H2D packed token places");
  check(
      cudaMemcpyAsync(kv.last_of, last, static_cast<size_t>(b) * 4, cudaMemcpyHostToDevice, stream),
      "H2D packed rows' last tokens");
  packed_rows = padded;
  try {
    decode_step(packed_ids.data(), packed_pos.data(), host_valid, t, past, logits, argmax);
  } catch (...) {
    packed_rows = 0;
    throw;
  }
  packed_rows = 0;
}

void Runner::Impl::last_logits(std::vector<float>& logits) {
  int64_t vocab = g.values[static_cast<size_t>(g.outputs[0])].shape.dims.back().value;
  logits.resize(static_cast<size_t>(kv.batch * vocab));
  check(cudaMemcpyAsync(logits.data(), out, logits.size() * 4, cudaMemcpyDeviceToHost, stream),
        "D2H logits");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

void Runner::Impl::gather_columns(const int32_t* from, int64_t used) {
  if (kv.k.empty() || used <= 0) return;
  int64_t e = 0;
  for (const ir::Node& n : g.nodes)
    if (n.op_type == "Attention")
      e = g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value;
  check(cudaMemcpyAsync(kv.from, from, static_cast<size_t>(kv.batch * kv.cache_s) * 4,
                        cudaMemcpyHostToDevice, stream),
        "H2D column sources");
  for (size_t l = 0; l < kv.k.size(); ++l)
    for (float* cache : {kv.k[l], kv.v[l]})
      gather_columns_kernel<<<static_cast<unsigned>(kv.batch), 256, 0, stream>>>(
          cache, kv.from, kv.cache_s, used, e);
  check(cudaGetLastError(), "gather_columns_kernel");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

Decoder::Decoder(std::shared_ptr<const void> owner, const ir::Graph& graph, Precision precision)
    : impl_(std::make_unique<Runner::Impl>(std::move(owner), graph, precision,
                                           std::map<std::string, int64_t>{})) {}
Decoder::~Decoder() = default;
void Decoder::reserve(int64_t batch, int64_t positions, int64_t prompt) {
  impl_->reserve(batch, positions, prompt);
}
void Decoder::step(const int64_t* ids, const int64_t* positions, const uint8_t* key_valid,
                   int64_t t, int64_t past, std::vector<float>* logits, int64_t* argmax) {
  impl_->decode_step(ids, positions, key_valid, t, past, logits, argmax);
}
void Decoder::step_packed(const int64_t* ids, const int64_t* positions, const int32_t* at,
                          const int32_t* last, int64_t rows, const uint8_t* key_valid, int64_t t,
                          int64_t past, std::vector<float>* logits, int64_t* argmax) {
  impl_->packed_step(ids, positions, at, last, rows, key_valid, t, past, logits, argmax);
}
void Decoder::greedy_steps(const int64_t* ids, const int64_t* positions, const uint8_t* key_valid,
                           int64_t past, int64_t steps, int64_t* picks) {
  impl_->decode_step(ids, positions, key_valid, 1, past, nullptr, picks, steps);
}
int64_t Decoder::max_greedy_steps() const {
  return impl_->max_greedy_steps();
}
void Decoder::last_logits(std::vector<float>& logits) {
  impl_->last_logits(logits);
}
void Decoder::gather_columns(const int32_t* from, int64_t used) {
  impl_->gather_columns(from, used);
}

}  // namespace gptrt::cuda
