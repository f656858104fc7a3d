#include "backends/cpu/gemm.h"

#include <algorithm>
#include <cstring>

#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kGeneric:
      return "generic";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "generic";
}

Isa isa_from_name(const std::string& name) {
  if (name == "generic") return Isa::kGeneric;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  throw Error(ErrorCode::kEngineMismatch,
              "unknown CPU ISA '" + name + "' (expected generic, avx2 or avx512)");
}

bool isa_supported(Isa isa) {
  const platform::CpuInfo& c = platform::cpu_info();
  switch (isa) {
    case Isa::kGeneric:
      return true;
    case Isa::kAvx2:
      return c.avx2 && c.fma;
    case Isa::kAvx512:
      return c.avx512f;
  }
  return false;
}

Isa best_isa() {
#if defined(__x86_64__) || defined(_M_X64)
  if (isa_supported(Isa::kAvx512)) return Isa::kAvx512;
  if (isa_supported(Isa::kAvx2)) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}

int64_t kernel_rows(Isa isa) {
  return isa == Isa::kAvx512 ? 12 : 6;
}

PanelKernel panel_kernel(Isa isa) {
#if defined(__x86_64__) || defined(_M_X64)
  if (isa == Isa::kAvx512) return panel_kernel_avx512;
  if (isa == Isa::kAvx2) return panel_kernel_avx2;
#endif
  return panel_kernel_generic;
}

Tensor pack_weights(const Tensor& w, bool transposed) {
  if (w.dtype() != DType::kFloat32 || w.rank() != 2) {
    throw Error(ErrorCode::kInternal,
                "pack_weights needs a 2-D float32 matrix, found " + shape_str(w.shape()));
  }
  int64_t k = transposed ? w.dim(1) : w.dim(0), n = transposed ? w.dim(0) : w.dim(1);
  int64_t panels = (n + kPanel - 1) / kPanel;
  Tensor out(DType::kFloat32, {panels, k, kPanel});  // zero-filled: padding columns stay 0
  const float* src = w.data<float>();
  float* dst = out.data_mut<float>();
  for (int64_t p = 0; p < panels; ++p) {
    for (int64_t kk = 0; kk < k; ++kk) {
      float* row = dst + (p * k + kk) * kPanel;
      for (int64_t j = 0; j < kPanel && p * kPanel + j < n; ++j) {
        int64_t col = p * kPanel + j;
        row[j] = transposed ? src[col * k + kk] : src[kk * n + col];
      }
    }
  }
  return out;
}

void panel_kernel_generic(const float* x, int64_t ldx, int64_t rows, int64_t k, const float* panel,
                          const float* bias16, float* c, int64_t ldc, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float acc[kPanel];
    for (int64_t j = 0; j < kPanel; ++j) acc[j] = bias16 ? bias16[j] : 0.f;
    const float* xr = x + r * ldx;
    for (int64_t kk = 0; kk < k; ++kk) {
      float a = xr[kk];
      const float* b = panel + kk * kPanel;
      for (int64_t j = 0; j < kPanel; ++j) acc[j] += a * b[j];
    }
    std::memcpy(c + r * ldc, acc, static_cast<size_t>(cols) * sizeof(float));
  }
}

void gemm_packed(Isa isa, const float* x, int64_t m, int64_t k, const float* packed, int64_t n,
                 const float* bias, float* c, ThreadPool& pool) {
  PanelKernel kernel = panel_kernel(isa);
  int64_t mr = kernel_rows(isa);
  int64_t panels = (n + kPanel - 1) / kPanel;
  // Rows of X come in chunks that stay in L2 (about 256 KiB, at least 4 row blocks) while a task
  // streams its panels; each panel is read from memory once per chunk and from cache for each
  // row block in it.
  int64_t chunk_rows =
      std::max<int64_t>(4 * mr, (int64_t{64} * 1024 / std::max<int64_t>(k, 1)) / mr * mr);
  int64_t chunks = (m + chunk_rows - 1) / chunk_rows;
  int64_t panel_tasks = std::max<int64_t>(
      1, std::min<int64_t>(panels, static_cast<int64_t>(pool.size()) * 8 / chunks + 1));
  int64_t per_task = (panels + panel_tasks - 1) / panel_tasks;
  pool.parallel_for(chunks * panel_tasks, [&](int64_t t) {
    int64_t r0 = (t / panel_tasks) * chunk_rows, r1 = std::min(m, r0 + chunk_rows);
    int64_t p0 = (t % panel_tasks) * per_task, p1 = std::min(panels, p0 + per_task);
    float bias_pad[kPanel];
    for (int64_t p = p0; p < p1; ++p) {
      int64_t cols = std::min(kPanel, n - p * kPanel);
      const float* b16 = nullptr;
      if (bias) {
        std::memset(bias_pad, 0, sizeof bias_pad);
        std::memcpy(bias_pad, bias + p * kPanel, static_cast<size_t>(cols) * sizeof(float));
        b16 = bias_pad;
      }
      const float* panel = packed + p * k * kPanel;
      for (int64_t r = r0; r < r1; r += mr) {
        kernel(x + r * k, k, std::min(mr, r1 - r), k, panel, b16, c + r * n + p * kPanel, n, cols);
      }
    }
  });
}

}  // namespace gptrt::cpu
