// The Engine's run-time half: load (mmap, checks by the engine's backend), save, contexts.
#include <filesystem>

#include "backends/backend.h"
#include "gptrt/error.h"
#include "ir/verifier.h"
#include "runtime/engine_impl.h"
#include "runtime/plan_check.h"

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

const ShapeRange* OptimizationProfile::find(const std::string& name) const {
  for (const auto& [n, r] : inputs) {
    if (n == name) return &r;
  }
  return nullptr;
}

std::shared_ptr<const Engine> Engine::load(const std::string& path) {
  auto impl = read_engine_file(platform::MappedFile::open(path));
  try {
    ir::verify(impl->graph);
  } catch (const Error& e) {
    throw Error(ErrorCode::kParseError,
                "engine '" + path + "' holds an invalid plan (" + e.what() + "); rebuild it");
  }
  check_plan(*impl, path);
  backends::get(impl->info.backend).check_engine(impl->info, impl->graph, path);
  return std::make_shared<Engine>(impl);
}

std::vector<uint8_t> Engine::serialize() const {
  return write_engine_file(*impl_);
}

void Engine::save(const std::string& path) const {
  // Never over the model it was built from (`--saveEngine` given the `--onnx` path).
  std::error_code ec;
  const std::string& source = impl_->info.model.source;
  if (!source.empty() && std::filesystem::equivalent(path, source, ec) && !ec)
    throw Error(ErrorCode::kInvalidArgument,
                "'" + path +
                    "' is the model this engine was built from; save the engine to "
                    "another path (e.g. model.engine)");
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
