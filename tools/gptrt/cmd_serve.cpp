// gptrt serve: the inference server (src/serve/) on an engine file, an ONNX model or a Hugging
// Face folder.
#include <cstdio>
#include <filesystem>

#include "common.h"
#include "gptrt/error.h"
#include "serve/server.h"
#include "tokenizer/tokenizer.h"

namespace gptrt::cli {

int cmd_serve(const std::vector<std::string>& argv) {
  std::vector<FlagSpec> specs = build_flags();
  std::vector<FlagSpec> more = {
      {"loadEngine", true, "engine file to serve instead of building from --onnx/--hf"},
      {"host", true, "address to listen on (default 127.0.0.1)"},
      {"port", true, "port (default 8080; 0: any free port, printed)"},
      {"slots", true, "sequences decoded together (KV-cache slots; default 8)"},
      {"max-queue", true, "requests waiting for a slot before 429 (default 64)"},
      {"prefill-chunk", true, "prompt tokens per step, shared by new requests (default 64)"},
      {"join-wait-steps", true,
       "decode steps new requests may wait to join in waves while all slots in use decode "
       "(default 0: they join at the next step)"},
      {"decode-steps", true,
       "greedy decode steps per pass while nothing waits to join (default 1; up to 8 on cuda, "
       "in one CUDA graph: tokens then reach clients in bursts)"},
      {"max-positions", true,
       "positions per slot, prompt plus generated tokens (default: the model's n_positions); "
       "the KV cache is planned for slots x this"},
      {"api-key", true, "require Authorization: Bearer KEY (default: none)"},
      {"model-name", true, "the model's name in the APIs (default: the model folder's or file's)"},
      {"tokenizer", true, "tokenizer.json or a folder (default: next to the model, if there)"},
      {"timeout", true, "seconds a request may run (default 600)"},
      {"threads", true, "CPU threads (default: every core)"},
      {"help", false, "show this help"},
  };
  specs.insert(specs.end(), more.begin(), more.end());
  Args args = Args::parse(specs, argv, "serve");
  if (args.has("help")) {
    print_help(
        "usage: gptrt serve (--loadEngine=E | --hf=DIR | --onnx=F) [--backend cpu|cuda] "
        "[--host H] [--port P] [--slots N] [--max-queue N] [--api-key K] [--model-name M]",
        specs);
    return 0;
  }
  auto notice = [](const std::string& s) { std::fprintf(stderr, "[I] %s\n", s.c_str()); };
  LoadedEngine loaded = load_or_build(args, "serve", notice);
  namespace fs = std::filesystem;
  std::shared_ptr<const tokenizer::Tokenizer> tok = find_tokenizer(args);
  serve::ServerConfig config;
  config.host = args.get("host", "127.0.0.1");
  config.port = static_cast<int>(args.get_int("port", 8080, 0));
  config.api_key = args.get("api-key", "");
  fs::path src = fs::path(loaded.source);
  config.model_name =
      args.get("model-name", src.filename().empty() ? src.parent_path().filename().string()
                                                    : src.stem().string());
  config.request_timeout_s = args.get_double("timeout", 600, 1e-3);
  serve::SchedulerConfig sched;
  sched.slots = args.get_int("slots", 8, 1);
  sched.max_queue = args.get_int("max-queue", 64, 0);
  sched.prefill_chunk = args.get_int("prefill-chunk", 64, 1);
  sched.threads = static_cast<int>(args.get_int("threads", 0, 0));
  sched.max_decode_steps = args.get_int("decode-steps", 1, 1);
  sched.max_positions = args.get_int("max-positions", 0, 2);
  sched.join_wait_steps = args.get_int("join-wait-steps", 0, 0);
  serve::Server server(loaded.engine, tok, config, sched);
  server.bind();
  server.install_signal_handlers();
  std::fprintf(stderr, "[I] serving '%s' (%s) on http://%s:%d with %lld slots%s\n",
               config.model_name.c_str(), backend_name(loaded.engine->info().backend),
               config.host.c_str(), server.port(), static_cast<long long>(sched.slots),
               tok ? "" : "; no tokenizer: prompts must be token ids");
  std::printf("%d\n", server.port());  // for scripts that asked for any free port
  std::fflush(stdout);
  server.serve();
  std::fprintf(stderr, "[I] stopped: requests in flight finished\n");
  return 0;
}

}  // namespace gptrt::cli
