// The gptrt command line: one subcommand per file.
#include <cstdio>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/cpu/gemm.h"
#include "common.h"
#include "gptrt/error.h"
#include "platform/cuda_info.h"
#include "platform/platform.h"

namespace gptrt::cli {

int cmd_version() {
  const platform::CpuInfo& cpu = platform::cpu_info();
  std::printf("gptrt %s (commit %s)\n", version(), build_commit());
  std::printf("compiler: %s, C++%ld\n", platform::compiler_name().c_str(), __cplusplus / 100 % 100);
  std::printf("CPU: %s, %d logical cores\n", cpu.model.c_str(), cpu.logical_cores);
  std::printf(
      "CPU ISA: %s (avx2 %s, fma %s, avx512f %s, avx512_bf16 %s, avx512_vnni %s, amx_bf16 %s)\n",
      cpu.best_isa().c_str(), cpu.avx2 ? "yes" : "no", cpu.fma ? "yes" : "no",
      cpu.avx512f ? "yes" : "no", cpu.avx512_bf16 ? "yes" : "no", cpu.avx512_vnni ? "yes" : "no",
      cpu.amx_bf16 ? (cpu::isa_supported(cpu::Isa::kAmxBf16) ? "yes" : "yes, refused by the OS")
                   : "no");
  std::printf(
      "ISA in use: %s for FP32 engines, %s for BF16 (cpu backend kernels; the reference backend "
      "is portable C++)\n",
      cpu::isa_name(cpu::best_isa()), cpu::isa_name(cpu::best_isa_for(DType::kBFloat16)));
  if (cpu::best_isa_for(DType::kBFloat16) == cpu::Isa::kAvx512Bf16)
    std::printf("BF16 GEMMs of more than %lld rows: %s\n",
                static_cast<long long>(cpu::kPairDotRows),
                cpu::bf16_dot_blocks() ? "vdpbf16ps dot products"
                                       : "weights widened to FP32 for FMAs (faster on this CPU "
                                         "vendor's cores; GPTRT_CPU_BF16_DOTS=1 forces dots)");
  std::printf("backends: cpu (FP32, multi-threaded), reference (portable C++, FP32)\n");
  platform::CudaInfo cuda = platform::cuda_info();
  if (!cuda.built_with_cuda) {
    std::printf("CUDA: not built with CUDA\n");
  } else {
    std::printf("CUDA toolkit: %s\n", cuda.toolkit.c_str());
    std::printf("CUDA driver: %s\n", cuda.driver.c_str());
    for (const std::string& g : cuda.gpus) std::printf("GPU: %s\n", g.c_str());
  }
  return 0;
}

}  // namespace gptrt::cli

namespace {

void usage() {
  std::printf(
      "gptrt: a C++ inference engine for GPT-2-family models\n\n"
      "usage: gptrt <command> [flags]   (gptrt <command> --help for its flags)\n\n"
      "commands:\n"
      "  exec      trtexec-compatible: build from --onnx and/or run --loadEngine, print the "
      "performance summary\n"
      "  build     import an ONNX model and write an engine file\n"
      "  run       run one forward pass, write outputs as .npy\n"
      "  inspect   describe a model or engine file (inputs, outputs, profiles, ops, parameters)\n"
      "  bench     the recipe's tables for gptrt and the peers installed (PyTorch, ONNX Runtime, "
      "TensorRT)\n"
      "  generate  generate text with a KV cache (greedy or sampled), --prompt or --prompt-ids\n"
      "  serve     an OpenAI-compatible and KServe-v2 inference server with continuous batching\n"
      "  tokenize  GPT-2 BPE token ids of a text (or --decode ids)\n"
      "  make-model  write a Hugging Face GPT-2 folder (distilgpt2 ... gpt2-xl) with seeded random "
      "weights\n"
      "  export-onnx write a Hugging Face GPT-2 folder as an ONNX file (no PyTorch needed)\n"
      "  --version the environment report: gptrt, compiler, CPU and ISA, CUDA toolkit, driver and "
      "GPU\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args = gptrt::platform::utf8_arguments(argc, argv);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    usage();
    return args.empty() ? 1 : 0;
  }
  std::string cmd = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  try {
    if (cmd == "--version" || cmd == "version") return gptrt::cli::cmd_version();
    if (cmd == "exec") return gptrt::cli::cmd_exec(rest);
    if (cmd == "build") return gptrt::cli::cmd_build(rest);
    if (cmd == "run") return gptrt::cli::cmd_run(rest);
    if (cmd == "inspect") return gptrt::cli::cmd_inspect(rest);
    if (cmd == "make-model") return gptrt::cli::cmd_make_model(rest);
    if (cmd == "export-onnx") return gptrt::cli::cmd_export_onnx(rest);
    if (cmd == "bench") return gptrt::cli::cmd_bench(rest);
    if (cmd == "generate") return gptrt::cli::cmd_generate(rest);
    if (cmd == "serve") return gptrt::cli::cmd_serve(rest);
    if (cmd == "tokenize") return gptrt::cli::cmd_tokenize(rest);
    std::fprintf(stderr, "gptrt: unknown command '%s'; run `gptrt --help` for the list\n",
                 cmd.c_str());
    return 1;
  } catch (const gptrt::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "gptrt: error (%s): %s\n", gptrt::error_code_name(e.code()), e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::fprintf(stderr,
                 "gptrt: error: out of memory; try smaller shapes or a smaller --maxBatch\n");
    return 1;
  } catch (const std::length_error& e) {
    std::fflush(stdout);
    std::fprintf(stderr,
                 "gptrt: error: a size given by the input or a flag is too large to hold (%s); "
                 "check the shapes and the files\n",
                 e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "gptrt: internal error: %s; please report it with the command line\n",
                 e.what());
    return 1;
  }
}
