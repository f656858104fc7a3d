#include "backends/cuda/weights.cuh"

#include <map>
#include <mutex>
#include <vector>

#include "backends/cuda/launch.cuh"
#include "core/half.h"

namespace gptrt::cuda {
namespace {

std::mutex g_weights_mu;
std::map<const void*, std::weak_ptr<DeviceWeights>> g_weights;

// Per value of `g`, the bytes its device copy takes (0: not uploaded: no constant, or one no node
// reads, as an INT8 plan's FP16 copy leaves the INT8 originals).
std::vector<size_t> upload_bytes(const ir::Graph& g) {
  std::vector<char> read(g.values.size(), 0);
  for (const ir::Node& n : g.nodes)
    for (int id : n.inputs)
      if (id >= 0) read[static_cast<size_t>(id)] = 1;
  std::vector<size_t> bytes(g.values.size(), 0);
  for (size_t i = 0; i < g.values.size(); ++i) {
    const ir::Value& v = g.values[i];
    if (!v.is_constant() || v.constant.nbytes() == 0 || !read[i]) continue;
    bytes[i] = v.constant.nbytes();
    if (v.constant.shape().size() == 2 &&
        (v.dtype == DType::kFloat16 || v.dtype == DType::kBFloat16))
      bytes[i] = static_cast<size_t>((v.constant.dim(0) + 7) / 8 * 8 * v.constant.dim(1) * 2);
  }
  return bytes;
}

}  // namespace

size_t weight_bytes_to_upload(const void* owner, const ir::Graph& g) {
  {
    std::lock_guard<std::mutex> lock(g_weights_mu);
    auto it = g_weights.find(owner);
    if (it != g_weights.end() && !it->second.expired()) return 0;
  }
  size_t sum = 0;
  for (size_t b : upload_bytes(g)) sum += b;
  return sum;
}

std::shared_ptr<DeviceWeights> weights_for(const void* owner, const ir::Graph& g) {
  std::lock_guard<std::mutex> lock(g_weights_mu);
  if (auto w = g_weights[owner].lock()) return w;
  auto w = std::make_shared<DeviceWeights>();
  const std::vector<size_t> sizes = upload_bytes(g);
  for (size_t i = 0; i < g.values.size(); ++i) {
    const ir::Value& v = g.values[i];
    const size_t bytes = sizes[i];
    if (bytes == 0) continue;
    void* p = nullptr;
    device_alloc(&p, bytes, "weights");
    w->ptr[static_cast<int>(i)] = p;
    if (bytes > v.constant.nbytes())
      check(cudaMemset(static_cast<char*>(p) + v.constant.nbytes(), 0, bytes - v.constant.nbytes()),
            "weights padding");
    check(cudaMemcpy(p, v.constant.raw(), v.constant.nbytes(), cudaMemcpyHostToDevice),
          "weights upload");
  }
  g_weights[owner] = w;
  return w;
}

}  // namespace gptrt::cuda
