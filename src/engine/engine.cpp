#include "backends/cpu/backend.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/reference/kernels.h"
#include "builder/builder.h"
#include "engine/engine_impl.h"
#include "gptrt/error.h"
#include "hf/importer.h"
#include "ir/verifier.h"
#include "onnx/importer.h"

#ifndef GPTRT_VERSION
#define GPTRT_VERSION "0.0.0"
#endif
#include "gptrt_commit.h"  // generated at build time: GPTRT_COMMIT

namespace gptrt {

const char* version() {
  return GPTRT_VERSION;
}
const char* build_commit() {
  return GPTRT_COMMIT;
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kFp16:
      return "fp16";
    case Precision::kBf16:
      return "bf16";
    case Precision::kTf32:
      return "tf32";
  }
  return "unknown";
}

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::kReference:
      return "reference";
    case Backend::kCpu:
      return "cpu";
    case Backend::kCuda:
      return "cuda";
  }
  return "unknown";
}

bool backend_available(Backend b) {
  return b == Backend::kReference || b == Backend::kCpu ||
         (b == Backend::kCuda && cuda::compiled_in());
}

const ShapeRange* OptimizationProfile::find(const std::string& name) const {
  for (const auto& [n, r] : inputs) {
    if (n == name) return &r;
  }
  return nullptr;
}

namespace {

Network network_from(onnx::ImportedModel m) {
  auto impl = std::make_shared<Network::Impl>();
  impl->graph = std::move(m.graph);
  impl->files = std::move(m.files);
  Network n;
  n.impl = impl;
  return n;
}

}  // namespace

Network Network::from_onnx(const std::string& path) {
  return network_from(onnx::import_onnx(path));
}

Network Network::from_hf(const std::string& dir) {
  return network_from(hf::import_folder(dir));
}

ModelInfo Network::info() const {
  return describe_graph(impl->graph);
}

std::shared_ptr<const Engine> Engine::build(const Network& network, const BuildConfig& config) {
  return std::make_shared<Engine>(builder::build(*network.impl, config));
}

std::shared_ptr<const Engine> Engine::load(const std::string& path) {
  auto impl = read_engine_file(platform::MappedFile::open(path));
  try {
    ir::verify(impl->graph);
  } catch (const Error& e) {
    throw Error(ErrorCode::kParseError,
                "engine '" + path + "' holds an invalid plan (" + e.what() + "); rebuild it");
  }
  if (impl->info.backend == Backend::kCpu) {
    cpu::Isa isa = cpu::isa_from_name(impl->info.target);
    if (!cpu::isa_supported(isa)) {
      throw Error(ErrorCode::kEngineMismatch,
                  "engine '" + path + "' was built for " + impl->info.target + " CPUs; this CPU (" +
                      platform::cpu_info().model + ") supports " + cpu::isa_name(cpu::best_isa()) +
                      "; rebuild the engine on this machine (or with --cpuIsa=" +
                      cpu::isa_name(cpu::best_isa()) + ")");
    }
  }
  if (impl->info.backend == Backend::kCuda) {
    if (!cuda::compiled_in())
      throw Error(
          ErrorCode::kEngineMismatch,
          "engine '" + path + "' is for the cuda backend, which this gptrt was built without");
    if (impl->info.target.rfind("sm_", 0) != 0)
      throw Error(ErrorCode::kEngineMismatch,
                  "engine '" + path + "' is for the cuda backend but its target '" +
                      impl->info.target + "' is no GPU architecture; rebuild it");
    for (const ir::Node& n : impl->graph.nodes) {
      if (!cuda::has_kernel(n))
        throw Error(ErrorCode::kEngineMismatch,
                    "engine '" + path + "' is for the cuda backend but uses " + n.describe() +
                        ", which it cannot run; rebuild it");
    }
    std::string why, sm = cuda::device_sm(&why);
    if (!sm.empty() && sm != impl->info.target)
      throw Error(ErrorCode::kEngineMismatch, "engine '" + path + "' was built for " +
                                                  impl->info.target + " GPUs; this GPU is " +
                                                  cuda::device_name() +
                                                  "; rebuild the engine on this machine");
    return std::make_shared<Engine>(impl);
  }
  for (const ir::Node& n : impl->graph.nodes) {
    bool known =
        reference::has_kernel(n.op_type, n.domain) ||
        (!n.domain.empty() && impl->info.backend == Backend::kCpu && cpu::has_kernel(n.op_type));
    if (!known) {
      throw Error(ErrorCode::kEngineMismatch, "engine '" + path + "' uses op " + n.op_type +
                                                  ", which this gptrt cannot run; rebuild it");
    }
  }
  return std::make_shared<Engine>(impl);
}

std::vector<uint8_t> Engine::serialize() const {
  return write_engine_file(*impl_);
}

void Engine::save(const std::string& path) const {
  std::vector<uint8_t> bytes = serialize();
  platform::write_file_atomically(path, bytes.data(), bytes.size());
}

const EngineInfo& Engine::info() const {
  return impl_->info;
}

std::unique_ptr<ExecutionContext> Engine::create_execution_context(int threads) const {
  return std::make_unique<ExecutionContext>(shared_from_this(), threads);
}

}  // namespace gptrt
