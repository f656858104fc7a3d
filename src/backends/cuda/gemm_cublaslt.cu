// Linear layers on cuBLASLt (the GEMMs the skinny kernels do not take, on sm_70 and newer): its
// handle and workspace, one plan per (node, rows), and the calls. A build without cuBLAS
// (GPTRT_CUDA_CUBLAS=OFF) runs every such layer on plain_gemm_kernel instead.
#include <algorithm>

#include "backends/cuda/rows.cuh"
#include "backends/cuda/runner_impl.cuh"
#include "backends/reference/fused_ops.h"

namespace gptrt::cuda {

#if GPTRT_WITH_CUBLAS

size_t Runner::Impl::cublaslt_workspace_bytes() {
  return kWorkspace;
}

void Runner::Impl::create_cublaslt() {
  check(cublasLtCreate(&lt), "cublasLtCreate");
  device_alloc(&workspace, kWorkspace, "cuBLASLt workspace");
}

void Runner::Impl::release_cublaslt() {
  for (auto& [k, lp] : lt_plans) {
    cublasLtMatmulDescDestroy(lp.op);
    cublasLtMatrixLayoutDestroy(lp.a);
    cublasLtMatrixLayoutDestroy(lp.b);
    cublasLtMatrixLayoutDestroy(lp.c);
  }
  lt_plans.clear();
  cudaFree(workspace);
  workspace = nullptr;
  if (lt) cublasLtDestroy(lt);
  lt = nullptr;
}

// The cuBLASLt plan of node `index` for `rows` rows (created on first use): y = act(x @ W +
// bias) (+ C) with y's rows `pitch` apart.
const Runner::Impl::LtPlan& Runner::Impl::lt_plan(size_t index, const ir::Node& n, int64_t rows,
                                                  int64_t k, int64_t cols, int64_t pitch,
                                                  cudaDataType_t out_type, int act, int bias_id) {
  auto key = std::make_pair(index, rows);
  auto it = lt_plans.find(key);
  if (it != lt_plans.end()) return it->second;
  const ir::Value& wv = g.values[static_cast<size_t>(n.inputs[1])];
  const bool trans = n.attr_int("transB", 0) != 0;
  LtPlan lp;
  cublasComputeType_t ct =
      precision == Precision::kTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  check(cublasLtMatmulDescCreate(&lp.op, ct, CUDA_R_32F), "cublasLtMatmulDescCreate");
  cublasOperation_t ta = trans ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(lp.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
        "TRANSA");
  check(cublasLtMatmulDescSetAttribute(lp.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
        "TRANSB");
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (bias_id >= 0)
    epi = act == reference::kActGeluTanh ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  else if (act == reference::kActGeluTanh)
    epi = CUBLASLT_EPILOGUE_GELU;
  check(cublasLtMatmulDescSetAttribute(lp.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi),
        "EPILOGUE");
  if (bias_id >= 0) {
    const void* bias = value_ptr(bias_id);
    check(cublasLtMatmulDescSetAttribute(lp.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                         sizeof bias),
          "BIAS_POINTER");
  }
  // Column-major views of the row-major operands: W [K, N] is N x K (ld N), or K x N (ld K)
  // transposed; x [rows, K] is K x rows; y [rows, N] is N x rows. With a pitch (stored [N, K]
  // only), `pitch` columns of W (zero rows past N) and of y.
  cudaDataType_t wt = cuda_type(wv.dtype), xt = storage(n.inputs[0]);
  check(
      cublasLtMatrixLayoutCreate(&lp.a, wt, trans ? k : cols, trans ? pitch : k, trans ? k : cols),
      "layout A");
  check(cublasLtMatrixLayoutCreate(&lp.b, xt, k, rows, k), "layout B");
  check(cublasLtMatrixLayoutCreate(&lp.c, out_type, pitch, rows, pitch), "layout C/D");
  cublasLtMatmulPreference_t pref = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  size_t ws = kWorkspace;
  check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                             sizeof ws),
        "workspace");
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(lt, lp.op, lp.a, lp.b, lp.c, lp.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0)
    throw Error(ErrorCode::kUnsupported, n.describe() +
                                             ": cuBLASLt has no algorithm for this GEMM (" +
                                             std::to_string(rows) + "x" + std::to_string(k) + "x" +
                                             std::to_string(cols) + ")");
  lp.algo = result.algo;
  return lt_plans.emplace(key, lp).first->second;
}

// One cuBLASLt call: the bias (and the tanh GELU) as its epilogue, the residual as C with beta
// = 1, and for exact GELU the bias epilogue into FP32 scratch, then gelu_erf_kernel.
void Runner::Impl::cublaslt_linear(size_t index, const ir::Node& n, int64_t m, void* y,
                                   const void* x_in) {
  const ir::Value& wv = g.values[static_cast<size_t>(n.inputs[1])];
  bool trans = n.attr_int("transB", 0) != 0;
  int64_t k = wv.constant.dim(trans ? 1 : 0), cols = wv.constant.dim(trans ? 0 : 1);
  int act = reference::activation_from_name(n.attr_string("activation", ""));
  int bias_id = n.inputs.size() > 2 ? n.inputs[2] : -1;
  int res_id = n.inputs.size() > 3 ? n.inputs[3] : -1;
  bool erf = act == reference::kActGeluErf;
  cudaDataType_t out_type = erf ? CUDA_R_32F : storage(n.outputs[0]);
  const int64_t pitch = pitched_cols(n);
  gemm_kind = erf ? "cuBLASLt+GELU kernel" : pitch != cols ? "cuBLASLt, pitched" : "cuBLASLt";
  const float one = 1.f, zero = 0.f;
  const size_t x_size = storage(n.inputs[0]) == CUDA_R_32F ? 4 : 2;
  const size_t y_size = out_type == CUDA_R_32F ? 4 : 2;
  const auto* x = static_cast<const char*>(x_in ? x_in : value_ptr(n.inputs[0]));
  const void* res = !erf && res_id >= 0 ? value_ptr(res_id) : nullptr;
  // Rows at a padded pitch go through `pitched` kPitchedRows at a time.
  const int64_t step = pitch != cols ? std::min<int64_t>(m, kPitchedRows) : m;
  for (int64_t r0 = 0; r0 < m; r0 += step) {
    const int64_t rows = std::min(step, m - r0);
    const LtPlan& lp = lt_plan(index, n, rows, k, cols, pitch, out_type, act, bias_id);
    void* d =
        erf ? static_cast<void*>(scratch)
        : pitch != cols
            ? static_cast<void*>(pitched)
            : static_cast<void*>(static_cast<char*>(y) + r0 * cols * static_cast<int64_t>(y_size));
    check(cublasLtMatmul(lt, lp.op, &one, value_ptr(n.inputs[1]), lp.a,
                         x + r0 * k * static_cast<int64_t>(x_size), lp.b, res ? &one : &zero,
                         res ? res : d, lp.c, d, lp.c, &lp.algo, workspace, kWorkspace, stream),
          "cublasLtMatmul");
    if (pitch != cols) {
      dim3 grid(static_cast<unsigned>(std::min<int64_t>((cols + 255) / 256, 64)),
                static_cast<unsigned>(rows));
      typed(n.outputs[0], [&](auto tag) {
        using T = decltype(tag);
        launch(compact_rows_kernel<T>, grid, dim3(256), 0, static_cast<const T*>(pitched), pitch,
               cols, static_cast<T*>(y) + r0 * cols);
      });
    }
  }
  if (erf) {
    const float* r = res_id >= 0 ? static_cast<const float*>(value_ptr(res_id)) : nullptr;
    int64_t total = m * cols;
    dim3 grid(static_cast<unsigned>(blocks_for(total, 256)));
    typed(n.outputs[0], [&](auto tag) {
      using T = decltype(tag);
      launch(gelu_erf_kernel<T>, grid, dim3(256), 0, scratch, r, total, static_cast<T*>(y));
    });
  }
}

#else  // GPTRT_WITH_CUBLAS

size_t Runner::Impl::cublaslt_workspace_bytes() {
  return 0;
}
void Runner::Impl::create_cublaslt() {}
void Runner::Impl::release_cublaslt() {}
void Runner::Impl::cublaslt_linear(size_t, const ir::Node& n, int64_t, void*, const void*) {
  throw Error(ErrorCode::kInternal,
              n.describe() + ": cuBLASLt was asked for in a build without it (plain_gemms is off)");
}

#endif  // GPTRT_WITH_CUBLAS

}  // namespace gptrt::cuda
