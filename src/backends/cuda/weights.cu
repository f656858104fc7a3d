#include "backends/cuda/weights.cuh"

#include <map>
#include <mutex>

#include "backends/cuda/launch.cuh"
#include "core/half.h"

namespace gptrt::cuda {
namespace {

std::mutex g_weights_mu;
std::map<const void*, std::weak_ptr<DeviceWeights>> g_weights;

}  // namespace

std::shared_ptr<DeviceWeights> weights_for(const void* owner, const ir::Graph& g) {
  std::lock_guard<std::mutex> lock(g_weights_mu);
  if (auto w = g_weights[owner].lock()) return w;
  auto w = std::make_shared<DeviceWeights>();
  std::vector<char> read(g.values.size(), 0);  // (an INT8 plan's FP16 copy keeps the INT8 unread)
  for (const ir::Node& n : g.nodes)
    for (int id : n.inputs)
      if (id >= 0) read[static_cast<size_t>(id)] = 1;
  for (size_t i = 0; i < g.values.size(); ++i) {
    const ir::Value& v = g.values[i];
    if (!v.is_constant() || v.constant.nbytes() == 0 || !read[i]) continue;
    size_t bytes = v.constant.nbytes();
    if (v.constant.shape().size() == 2 &&
        (v.dtype == DType::kFloat16 || v.dtype == DType::kBFloat16))
      bytes = static_cast<size_t>((v.constant.dim(0) + 7) / 8 * 8 * v.constant.dim(1) * 2);
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
