// `gptrt export-onnx`: a Hugging Face GPT-2 folder written as an ONNX file by gptrt itself (the
// graph its importer builds: standard ONNX ops, opset 20), for ONNX Runtime and other ONNX tools
// on machines without PyTorch.
#include <cstdio>

#include "common.h"
#include "gptrt/engine.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::cli {

int cmd_export_onnx(const std::vector<std::string>& argv) {
  std::vector<FlagSpec> specs = {
      {"hf", true, "Hugging Face GPT-2 folder (config.json + model.safetensors) (required)"},
      {"out", true, "ONNX file to write (required)"},
      {"help", false, "show this help"},
  };
  Args args = Args::parse(specs, argv, "export-onnx");
  if (args.has("help")) {
    print_help(
        "usage: gptrt export-onnx --hf DIR --out model.onnx\n"
        "Writes the folder's GPT-2 as an ONNX file (inputs input_ids and attention_mask, output "
        "logits), without PyTorch.",
        specs);
    return 0;
  }
  if (!args.has("hf") || !args.has("out"))
    throw Error(ErrorCode::kInvalidArgument,
                "gptrt export-onnx: --hf=DIR and --out=FILE are required");
  double t0 = platform::now_seconds();
  Network::from_hf(args.get("hf")).save_onnx(args.get("out"));
  std::printf("[I] wrote %s from %s in %.2f s\n", args.get("out").c_str(), args.get("hf").c_str(),
              platform::now_seconds() - t0);
  return 0;
}

}  // namespace gptrt::cli
