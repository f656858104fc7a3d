// Runner::Impl: construction (the switches, the device, the arena), the forward pass over the
// plan, one CUDA graph per input shape, profiling and tracing.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/attention_launch.cuh"
#include "backends/cuda/embedding.cuh"
#include "backends/cuda/layer_norm.cuh"
#include "backends/cuda/rows.cuh"
#include "backends/cuda/runner_impl.cuh"
#include "backends/reference/fused_ops.h"
#include "core/half.h"

namespace gptrt::cuda {

namespace {

__global__ void spin_kernel(int64_t ns) {
  uint64_t start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (static_cast<int64_t>(now - start) < ns);
}

}  // namespace

Runner::Impl::Impl(std::shared_ptr<const void> o, const ir::Graph& graph, Precision p,
                   const std::map<std::string, int64_t>& dim_max)
    : owner(std::move(o)), g(graph), precision(p) {
  // The switches (docs/DEVICE.md), checked before anything is made.
  opts = Options::from_environment(cublas_compiled_in());
  forced_tn = opts.skinny_tn;
  stream_mode = opts.stream;
  if (opts.decode_steps > 0) {
    max_steps = opts.decode_steps;
    steps_set = true;
  }
  fused_attention_enabled = opts.fused_attention;
  packed_enabled = opts.packed;
  // Nothing is made before the switches are checked; if anything below fails, what was made
  // is released (the destructor does not run for a constructor that throws).
  try {
    // The kernel families this GPU runs are those of the SM the kernels were compiled for (a
    // compute_61 build on an H100 runs as on a GTX 1060: kernel_sm).
    sm_major = kernel_sm() / 10;
    plain_gemms = !cublas_compiled_in() || opts.gemm == GemmChoice::kPlain ||
                  (sm_major < 7 && opts.gemm != GemmChoice::kCublasLt);
    // What this context takes on the GPU, checked whole before any of it is allocated.
    plan = ir::plan_memory(g, dim_max, [](const ir::Node&) { return true; });
    check_memory_plan({{"weights", weight_bytes_to_upload(owner.get(), g)},
                       {"activation arena", static_cast<size_t>(std::max<int64_t>(plan.total, 0))},
                       {"cuBLASLt workspace", plain_gemms ? 0 : cublaslt_workspace_bytes()}},
                      "this engine's execution context");
    weights = weights_for(owner.get(), g);
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    for (cudaEvent_t& e : ev) check(cudaEventCreate(&e), "cudaEventCreate");
    half = half_values(g, p);
    int dev = 0, optin = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    if (!plain_gemms) create_cublaslt();
    check(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, dev), "SM count");
    check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
          "shared memory size");
    smem_optin = static_cast<size_t>(optin);
    launch.stream = stream;
    launch.overlap = sm_major >= 9 && opts.pdl;
    launch.carveout = p == Precision::kFp16 || p == Precision::kBf16 ? 100 : 75;
    skinny_enabled = sm_major >= 8 && (p == Precision::kFp16 || p == Precision::kBf16) &&
                     opts.gemm == GemmChoice::kAuto;
    skinny_fp32_enabled = sm_major >= 8 && (p == Precision::kFp32 || p == Precision::kTf32) &&
                          opts.gemm == GemmChoice::kAuto;
    if (skinny_fp32_enabled)
      for (int mr : {1, 8, 16})
        for (int v : {2, 3, 4, 6})
          if (fp32_kernel(mr, v)) allow_all_shared_memory(fp32_kernel(mr, v));
    if (skinny_fp32_enabled || skinny_enabled)
      for (int mr : {1, 8, 16}) allow_all_shared_memory(stream_kernel(mr));
    if (skinny_enabled)
      for (int m = 8; m <= 16 * kSkinnyMaxTiles; m += 8) allow_all_shared_memory(skinny_kernel(m));
    find_layer_norm_fusions();
    find_attention_fusions();
    if (plan.total > 0)
      device_alloc(reinterpret_cast<void**>(&arena), static_cast<size_t>(plan.total),
                   "activation arena");
    int64_t rows = 1;
    for (const auto& [sym, v] : dim_max) rows *= v;
    reserve_row_buffers(rows);
  } catch (...) {
    release();
    throw;
  }
}

// The scratch buffers a pass of `rows` rows needs (grown, never shrunk): FP32 GEMM outputs
// before an exact-GELU kernel, and GEMM outputs at a padded pitch (see pitched_cols).
void Runner::Impl::reserve_row_buffers(int64_t rows) {
  int64_t gelu_bytes = 0, pitched_bytes = 0;
  for (const ir::Node& n : g.nodes) {
    if (n.op_type != "Linear") continue;
    const int64_t cols = g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value;
    if (n.attr_string("activation", "") == "gelu_erf")
      gelu_bytes = std::max(gelu_bytes, rows * cols * 4);
    const int64_t pitch = pitched_cols(n);
    if (pitch != cols)
      pitched_bytes = std::max(pitched_bytes, std::min(rows, kPitchedRows) * pitch *
                                                  (storage(n.outputs[0]) == CUDA_R_32F ? 4 : 2));
  }
  grow(&scratch, &scratch_bytes, gelu_bytes, false);
  grow(&pitched, &pitched_capacity, pitched_bytes, false);
}

// Everything the Runner made (null handles are skipped: a constructor that failed midway).
void Runner::Impl::release() {
  free_kv();
  for (auto& [k, ge] : graphs) cudaGraphExecDestroy(ge);
  release_cublaslt();
  for (auto& [id, p] : op_inputs) cudaFree(p);
  op_inputs.clear();
  cudaFree(arena);
  cudaFree(scratch);
  cudaFree(pitched);
  cudaFree(out);
  cudaFree(ids);
  cudaFree(mask);
  cudaFree(pos);
  cudaFreeHost(pinned_in);
  cudaFreeHost(pinned_out);
  cudaFree(bad);
  cudaFreeHost(pinned_bad);
  if (caller_ready) cudaEventDestroy(caller_ready);
  for (cudaEvent_t e : ev)
    if (e) cudaEventDestroy(e);
  for (cudaEvent_t e : mark_events) cudaEventDestroy(e);
  if (stream) cudaStreamDestroy(stream);
}

void Runner::Impl::drop_graphs() {
  for (auto& [k, ge] : graphs) cudaGraphExecDestroy(ge);
  graphs.clear();
}

void* Runner::Impl::value_ptr(int id) {
  if (id < 0) return nullptr;
  if (auto in = op_inputs.find(id); in != op_inputs.end()) return in->second;
  auto w = weights->ptr.find(id);
  if (w != weights->ptr.end()) return w->second;
  if (id == g.outputs[0]) return out;
  int64_t off = plan.offset[static_cast<size_t>(id)];
  if (off < 0)
    throw Error(ErrorCode::kInternal,
                "value '" + g.values[static_cast<size_t>(id)].name + "' has no device memory");
  return arena + off;
}

// Every kernel of one forward pass for [b, s] on `stream` (captured or launched directly).
void Runner::Impl::forward(int64_t b, int64_t s, bool with_pos, bool with_mask, bool decode) {
  const bool packed = decode && packed_rows > 0;  // (a generation pass of packed tokens)
  // The rows of the pass, and of the LM head (a generation pass: each cache row's last token).
  int64_t rows = packed ? packed_rows : b * s, head_rows = decode ? b : rows;
  const int64_t group = skinny_enabled ? 16 * kSkinnyMaxTiles : skinny_fp32_enabled ? 16 : 0;
  attention_done = -1;
  row_group = decode && s > 1 && !prefilled && b <= group && rows <= kPrefillGroupMax ? group : 0;
  if (decode && s > 1) prefilled = true;
  dim3 row_blocks(static_cast<unsigned>(rows)), threads(256);
  size_t layer = 0;
  for (size_t idx = 0; idx < g.nodes.size(); ++idx) {
    const ir::Node& n = g.nodes[idx];
    void* y = value_ptr(n.outputs[0]);
    if (n.op_type == "Embedding") {
      const ir::Value& wpe = g.values[static_cast<size_t>(n.inputs[3])];
      const auto* wte_p = static_cast<const float*>(value_ptr(n.inputs[2]));
      const auto* wpe_p = static_cast<const float*>(value_ptr(n.inputs[3]));
      if (step_in)  // a generation step's inputs, from mapped host memory
        launch(step_embedding_kernel, row_blocks, threads, 0, step_in, rows, b * kv.cache_s,
               kv.past, kv.valid, wte_p, wpe_p, wpe.constant.dim(1), static_cast<float*>(y), ids,
               pos);
      else
        launch(embedding_kernel, row_blocks, threads, 0, ids, with_pos ? pos : nullptr, wte_p,
               wpe_p, s, wpe.constant.dim(1), static_cast<float*>(y));
    } else if (n.op_type == "LayerNormalization") {
      if (layer_norm_fused(idx, rows, head_rows)) continue;  // its readers normalise
      int64_t e = g.values[static_cast<size_t>(n.inputs[1])].constant.numel();
      typed(n.outputs[0], [&](auto tag) {
        using T = decltype(tag);
        launch(layer_norm_kernel<T>, row_blocks, threads, 0,
               static_cast<const float*>(value_ptr(n.inputs[0])),
               static_cast<const float*>(value_ptr(n.inputs[1])),
               static_cast<const float*>(value_ptr(n.inputs[2])), n.attr_float("epsilon", 1e-5f), e,
               static_cast<T*>(y));
      });
    } else if (n.op_type == "Attention") {
      if (static_cast<int>(idx) == attention_done) {  // (run by qkv_attention_kernel)
        ++layer;
        continue;
      }
      AttentionArgs a{};
      a.qkv = static_cast<const float*>(value_ptr(n.inputs[0]));
      a.out = y;
      a.b = b;
      a.t = s;
      a.e = g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value;
      a.heads = n.attr_int("num_heads", 1);
      a.scale = n.attr_float("scale", 1.f);
      if (decode) {  // against the KV cache, padding from its flags
        a.kc = kv.k[layer];
        a.vc = kv.v[layer];
        a.mask = kv.valid;
        a.past = kv.past;
        a.key_stride = kv.cache_s;
        if (packed) {
          a.packed = kv.at;
          a.rows = packed_rows;
        }
      } else {
        a.mask = with_mask && n.inputs.size() > 1 && n.inputs[1] >= 0 ? mask : nullptr;
        a.key_stride = s;
      }
      typed(n.outputs[0], [&](auto tag) {
        using T = decltype(tag);
        if (decode)
          launch_attention<T, uint8_t>(a, launch);
        else
          launch_attention<T, int64_t>(a, launch);
      });
      ++layer;
    } else if (decode && n.outputs[0] == g.outputs[0]) {  // LM head: last positions only
      // (of the LayerNorm's input when the skinny kernel normalises)
      bool ln = ln_before[idx] >= 0 &&
                layer_norm_fused(static_cast<size_t>(ln_before[idx]), rows, head_rows);
      int src = ln ? g.nodes[static_cast<size_t>(ln_before[idx])].inputs[0] : n.inputs[0];
      const void* x = value_ptr(src);
      if (s > 1) {
        int64_t e = g.values[static_cast<size_t>(src)].shape.dims.back().value;
        typed(src, [&](auto tag) {
          using T = decltype(tag);
          launch(last_rows_kernel<T>, dim3(static_cast<unsigned>(b)), threads, 0,
                 static_cast<const T*>(x), s, e, packed ? kv.last_of : nullptr,
                 static_cast<T*>(kv.last));
        });
        x = kv.last;
      }
      linear(idx, n, b, y, x, ln);
    } else if (qkv_attention(idx, n, b, s, decode, with_mask, layer)) {
      attention_done = attention_after[idx];
    } else {  // Linear
      bool ln = ln_before[idx] >= 0 &&
                layer_norm_fused(static_cast<size_t>(ln_before[idx]), rows, head_rows);
      linear(idx, n, rows, y, nullptr, ln);
    }
    check(cudaGetLastError(), "kernel launch");
    if (marking) mark(n, rows);
  }
}

void Runner::Impl::mark(const ir::Node& n, int64_t rows) {
  std::string label = n.op_type;
  if (n.op_type == "Linear") {
    const ir::Value& w = g.values[static_cast<size_t>(n.inputs[1])];
    bool head = n.outputs[0] == g.outputs[0];
    int64_t k = w.constant.dim(n.attr_int("transB", 0) ? 1 : 0), cols = w.constant.numel() / k;
    label += (head ? " (LM head) " : " ") + std::to_string(k) + "->" + std::to_string(cols) + " " +
             gemm_kind;
  }
  label += ", " + std::to_string(rows) + " rows";
  size_t i = mark_labels.size();
  if (i == mark_events.size()) {
    mark_events.push_back(nullptr);
    check(cudaEventCreate(&mark_events.back()), "cudaEventCreate");
  }
  check(cudaEventRecord(mark_events[i], stream), "cudaEventRecord");
  mark_labels.push_back(label);
}

#ifdef GPTRT_CUDA_TRACE
__device__ TraceRecord trace_records[kTraceCapacity];
__device__ unsigned trace_count;

bool Runner::Impl::trace_begin() {
  if (++trace_runs != opts.trace_run || opts.trace_file.empty()) return false;
  unsigned zero = 0;
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  check(cudaMemcpyToSymbol(trace_count, &zero, sizeof zero), "trace reset");
  return true;
}

void Runner::Impl::trace_end() {
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  unsigned count = 0;
  check(cudaMemcpyFromSymbol(&count, trace_count, sizeof count), "trace count");
  count = std::min(count, kTraceCapacity);
  std::vector<TraceRecord> records(count);
  check(cudaMemcpyFromSymbol(records.data(), trace_records, count * sizeof(TraceRecord)),
        "trace records");
  FILE* f = std::fopen(opts.trace_file.c_str(), "w");
  if (!f) return;
  for (const TraceRecord& r : records)
    std::fprintf(f, "%llu %u %u %llu %llu %llu %llu %llu %llu\n", r.grid, r.sm, r.block, r.start,
                 r.wait, r.end, r.marks[0], r.marks[1], r.marks[2]);
  std::fclose(f);
}
#endif

void Runner::Impl::reserve_io(int64_t rows, int64_t out_need) {
  if (rows > io_elems) {
    cudaFree(ids);
    cudaFree(mask);
    cudaFree(pos);
    ids = mask = pos = nullptr;
    int64_t cap = 0;
    grow(&ids, &cap, rows * 8, false);
    cap = 0;
    grow(&mask, &cap, rows * 8, false);
    cap = 0;
    grow(&pos, &cap, rows * 8, false);
    io_elems = rows;
    drop_graphs();
  }
  // Output buffer: grown to the largest shape seen (captured graphs point into it).
  if (out_need > out_bytes) {
    drop_graphs();
    grow(&out, &out_bytes, out_need, false);
  }
}

void Runner::Impl::enqueue_forward(int64_t b, int64_t s, bool with_pos, bool with_mask,
                                   Runner::Profile* profile) {
  check(cudaEventRecord(ev[1], stream), "cudaEventRecord");
  if (profile) {
    launch(spin_kernel, dim3(1), dim3(1), 0, int64_t{2000000});  // 2 ms: the launches queue up
    marking = true;
    mark_labels.clear();
    check(cudaEventRecord(ev[1], stream), "cudaEventRecord");
    forward(b, s, with_pos, with_mask);
    marking = false;
  } else if (use_graphs) {
    auto key = std::make_pair(b, s);
    auto it = graphs.find(key);
    if (it == graphs.end()) {
      cudaGraph_t graph = nullptr;
      check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
            "cudaStreamBeginCapture");
      forward(b, s, with_pos, with_mask);
      check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
      cudaGraphExec_t exec = nullptr;
      check(cudaGraphInstantiateWithFlags(&exec, graph, 0), "cudaGraphInstantiate");
      cudaGraphDestroy(graph);
      it = graphs.emplace(key, exec).first;
    }
#ifdef GPTRT_CUDA_TRACE
    const bool tracing = trace_begin();
#endif
    check(cudaGraphLaunch(it->second, stream), "cudaGraphLaunch");
#ifdef GPTRT_CUDA_TRACE
    if (tracing) trace_end();
#endif
  } else {
    forward(b, s, with_pos, with_mask);
  }
}

std::vector<Tensor> Runner::Impl::run(const std::map<std::string, Tensor>& inputs, Timings* t,
                                      Runner::Profile* profile) {
  const ir::Node& embed = g.nodes.front();
  std::string ids_name = g.values[static_cast<size_t>(embed.inputs[0])].name;
  const Tensor& ids_t = inputs.at(ids_name);
  int64_t b = ids_t.dim(0), s = ids_t.dim(1), rows = b * s;
  const Tensor* mask_t = nullptr;
  const Tensor* pos_t = nullptr;
  for (int id : g.inputs) {
    const std::string& name = g.values[static_cast<size_t>(id)].name;
    if (name == ids_name) continue;
    bool is_pos = embed.inputs.size() > 1 && embed.inputs[1] == id;
    auto it = inputs.find(name);
    if (it == inputs.end()) continue;
    (is_pos ? pos_t : mask_t) = &it->second;
  }
  // Inputs as int64 in pinned memory, then one copy each to fixed device buffers.
  int64_t vocab = g.values[static_cast<size_t>(g.outputs[0])].shape.dims.back().value;
  int64_t out_need = rows * vocab * 4;
  reserve_io(rows, out_need);
  grow(&pinned_in, &pinned_in_bytes, rows * 8 * 3, true);
  int64_t* host = static_cast<int64_t*>(pinned_in);
  auto stage = [&](const Tensor* src, int64_t* dst) {
    for (int64_t i = 0; i < rows; ++i)
      dst[i] = src->dtype() == DType::kInt64   ? src->data<int64_t>()[i]
               : src->dtype() == DType::kInt32 ? src->data<int32_t>()[i]
                                               : static_cast<int64_t>(reference::nonzero(*src, i));
  };
  stage(&ids_t, host);
  if (mask_t) stage(mask_t, host + rows);
  if (pos_t && pos_t->dim(0) == b) stage(pos_t, host + 2 * rows);
  if (pos_t && pos_t->dim(0) == 1)
    for (int64_t r = 0; r < b; ++r)
      for (int64_t i = 0; i < s; ++i)
        host[2 * rows + r * s + i] =
            pos_t->dtype() == DType::kInt64 ? pos_t->data<int64_t>()[i] : pos_t->data<int32_t>()[i];
  grow(&pinned_out, &pinned_out_bytes, out_need, true);

  check(cudaEventRecord(ev[0], stream), "cudaEventRecord");
  check(cudaMemcpyAsync(ids, host, static_cast<size_t>(rows * 8), cudaMemcpyHostToDevice, stream),
        "H2D ids");
  if (mask_t)
    check(cudaMemcpyAsync(mask, host + rows, static_cast<size_t>(rows * 8), cudaMemcpyHostToDevice,
                          stream),
          "H2D mask");
  if (pos_t)
    check(cudaMemcpyAsync(pos, host + 2 * rows, static_cast<size_t>(rows * 8),
                          cudaMemcpyHostToDevice, stream),
          "H2D positions");
  enqueue_forward(b, s, pos_t != nullptr, mask_t != nullptr, profile);
  check(cudaEventRecord(ev[2], stream), "cudaEventRecord");
  check(cudaMemcpyAsync(pinned_out, out, static_cast<size_t>(out_need), cudaMemcpyDeviceToHost,
                        stream),
        "D2H logits");
  check(cudaEventRecord(ev[3], stream), "cudaEventRecord");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  if (t) {
    float a = 0, c = 0, d = 0;
    cudaEventElapsedTime(&a, ev[0], ev[1]);
    cudaEventElapsedTime(&c, ev[1], ev[2]);
    cudaEventElapsedTime(&d, ev[2], ev[3]);
    *t = Timings{a, c, d};
  }
  for (size_t i = 0; profile && i < mark_labels.size(); ++i) {
    float ms = 0;
    cudaEventElapsedTime(&ms, i ? mark_events[i - 1] : ev[1], mark_events[i]);
    auto& slot = (*profile)[mark_labels[i]];
    slot.first += ms;
    slot.second += 1;
  }
  Tensor result = Tensor::uninitialized(DType::kFloat32, {b, s, vocab});
  std::memcpy(result.data_mut<float>(), pinned_out, static_cast<size_t>(out_need));
  return {result};
}

std::vector<Tensor> Runner::Impl::run_op(const std::map<std::string, Tensor>& inputs) {
  const ir::Node& n = g.nodes.front();
  if (g.nodes.size() != 1 || g.outputs.size() != 1)
    throw Error(ErrorCode::kInternal, "run_op takes a plan of one op with one output");
  const Tensor& first = inputs.at(g.values[static_cast<size_t>(n.inputs[0])].name);
  // [b, s] of the pass: the ids' for the embedding, qkv's for attention; rows otherwise.
  const int64_t rows = first.numel() / (n.op_type == "Embedding" ? 1 : first.shape().back());
  const int64_t b = n.op_type == "Attention" || n.op_type == "Embedding" ? first.dim(0) : rows;
  const int64_t s = rows / b;
  bool with_pos = false, with_mask = false;
  auto stage_ints = [&](const Tensor& t, int64_t** dst) {
    std::vector<int64_t> v(static_cast<size_t>(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i)
      v[static_cast<size_t>(i)] = t.dtype() == DType::kInt64   ? t.data<int64_t>()[i]
                                  : t.dtype() == DType::kInt32 ? t.data<int32_t>()[i]
                                                               : reference::nonzero(t, i);
    int64_t cap = 0;
    grow(dst, &cap, t.numel() * 8, false);
    check(cudaMemcpy(*dst, v.data(), v.size() * 8, cudaMemcpyHostToDevice), "H2D op input");
  };
  for (int id : g.inputs) {
    const Tensor& t = inputs.at(g.values[static_cast<size_t>(id)].name);
    if (n.op_type == "Embedding" && id == n.inputs[0]) {
      stage_ints(t, &ids);
    } else if (n.op_type == "Embedding") {
      stage_ints(t, &pos);
      with_pos = true;
    } else if (n.op_type == "Attention" && n.inputs.size() > 1 && id == n.inputs[1]) {
      stage_ints(t, &mask);
      with_mask = true;
    } else {
      // A linear layer's input in the engine's 16-bit type, as the op before it would store it.
      bool as_half = n.op_type == "Linear" && id == n.inputs[0] &&
                     (precision == Precision::kFp16 || precision == Precision::kBf16);
      half[static_cast<size_t>(id)] = as_half;
      Tensor host = as_half ? Tensor(DType::kUInt8, {t.numel() * 2}) : t;
      for (int64_t i = 0; as_half && i < t.numel(); ++i)
        reinterpret_cast<uint16_t*>(host.raw_mut())[i] = precision == Precision::kFp16
                                                             ? float_to_half(t.data<float>()[i])
                                                             : float_to_bf16(t.data<float>()[i]);
      void* p = nullptr;
      check(cudaMalloc(&p, static_cast<size_t>(host.nbytes())), "cudaMalloc (op input)");
      op_inputs[id] = p;
      check(cudaMemcpy(p, host.raw(), static_cast<size_t>(host.nbytes()), cudaMemcpyHostToDevice),
            "H2D op input");
    }
  }
  const ir::Value& y = g.values[static_cast<size_t>(g.outputs[0])];
  Shape shape;
  for (const ir::Dim& d : y.shape.dims) shape.push_back(d.value);
  Tensor result = Tensor::uninitialized(DType::kFloat32, shape);
  grow(&out, &out_bytes, result.nbytes(), false);
  reserve_row_buffers(rows);
  forward(b, s, with_pos, with_mask);
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  check(cudaMemcpy(result.raw_mut(), out, static_cast<size_t>(result.nbytes()),
                   cudaMemcpyDeviceToHost),
        "D2H op output");
  return {result};
}

std::vector<Tensor> run_op(std::shared_ptr<const void> owner, const ir::Graph& plan,
                           Precision precision, const std::map<std::string, Tensor>& inputs) {
  Runner::Impl impl(std::move(owner), plan, precision, {});
  return impl.run_op(inputs);
}

Runner::Runner(std::shared_ptr<const void> owner, const ir::Graph& graph, Precision precision,
               const std::map<std::string, int64_t>& dim_max)
    : impl_(std::make_unique<Impl>(std::move(owner), graph, precision, dim_max)) {}
Runner::~Runner() = default;
std::vector<Tensor> Runner::run(const std::map<std::string, Tensor>& inputs, Timings* t,
                                Profile* profile) {
  return impl_->run(inputs, t, profile);
}
backends::BadValue Runner::run_device(const std::map<std::string, DeviceTensor>& inputs,
                                      const std::vector<DeviceTensor>& outputs,
                                      const std::map<std::string, int64_t>& limits, void* stream) {
  return impl_->run_device(inputs, outputs, limits, static_cast<cudaStream_t>(stream));
}
void Runner::set_use_graphs(bool on) {
  impl_->use_graphs = on;
}

int64_t Runner::activation_bytes() const {
  return impl_->plan.total + impl_->out_bytes;
}

}  // namespace gptrt::cuda
