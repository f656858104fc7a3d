// `gptrt generate`: text generation with a KV cache (greedy by default, as Hugging Face).
#include <cstdio>
#include <filesystem>
#include <optional>

#include "common.h"
#include "core/json.h"
#include "gptrt/error.h"
#include "gptrt/generate.h"
#include "tokenizer/tokenizer.h"

namespace gptrt::cli {

int cmd_generate(const std::vector<std::string>& argv) {
  std::vector<FlagSpec> specs = build_flags();
  std::vector<FlagSpec> more = {
      {"loadEngine", true, "engine file to run instead of building from --onnx/--hf"},
      {"prompt", true, "prompt text (repeat for a batch; needs a tokenizer)", true},
      {"prompt-ids", true, "prompt as comma-separated token ids (repeatable)", true},
      {"tokenizer", true, "tokenizer.json or a folder (default: next to the model, if there)"},
      {"max-new-tokens", true, "tokens to generate per prompt (default 20)"},
      {"do-sample", false, "sample instead of greedy decoding"},
      {"temperature", true, "sampling temperature (default 1.0)"},
      {"top-k", true, "sample among the k most likely tokens (default 0: off)"},
      {"top-p", true, "sample among the most likely tokens holding this probability (default 1.0)"},
      {"repetition-penalty", true, "penalise tokens already in the row (default 1.0: off)"},
      {"seed", true, "random seed of sampling (default 0)"},
      {"stop", true, "stop a row when its text ends with this string (repeatable)", true},
      {"eos-id", true, "end-of-text token id (default: the tokenizer's <|endoftext|>, if any)"},
      {"pad-id", true, "padding token id for batches of unequal prompts (default 0)"},
      {"truncate", false, "keep the last tokens of a prompt that does not fit instead of failing"},
      {"stream", false, "print tokens as they come (batch of one prompt, text format)"},
      {"format", true, "text (default) or json"},
      {"threads", true, "CPU threads (default: every core)"},
      {"help", false, "show this help"},
  };
  specs.insert(specs.end(), more.begin(), more.end());
  Args args = Args::parse(specs, argv, "generate");
  if (args.has("help")) {
    print_help(
        "usage: gptrt generate (--onnx=MODEL.onnx | --hf=DIR | --loadEngine=ENGINE) "
        "--prompt \"...\" | --prompt-ids 1,2,3 [--max-new-tokens N] [--do-sample ...]",
        specs);
    return 0;
  }
  std::string format = args.get("format", "text");
  if (format != "text" && format != "json")
    throw Error(ErrorCode::kInvalidArgument,
                "--format must be text or json, found '" + format + "'");
  std::vector<std::string> texts = args.all("prompt");
  std::vector<std::string> id_lists = args.all("prompt-ids");
  if (texts.empty() && id_lists.empty())
    throw Error(
        ErrorCode::kInvalidArgument,
        "gptrt generate: give --prompt \"text\" or --prompt-ids 1,2,3 (repeat for a batch)");
  std::unique_ptr<tokenizer::Tokenizer> tok = find_tokenizer(args);
  if (!texts.empty() && !tok)
    throw Error(ErrorCode::kInvalidArgument,
                "--prompt needs a tokenizer: pass --tokenizer=DIR|tokenizer.json (none was found "
                "next to the model), or give --prompt-ids");

  GenerationConfig config;
  config.max_new_tokens = args.get_int("max-new-tokens", 20, 1);
  config.do_sample = args.has("do-sample");
  config.temperature = static_cast<float>(args.get_double("temperature", 1.0, 1e-6));
  config.top_k = args.get_int("top-k", 0, 0);
  config.top_p = static_cast<float>(args.get_double("top-p", 1.0, 1e-6, 1.0));
  if (config.top_p > 1.0f) throw Error(ErrorCode::kInvalidArgument, "--top-p must be in (0, 1]");
  config.repetition_penalty = static_cast<float>(args.get_double("repetition-penalty", 1.0, 1e-6));
  config.seed = static_cast<uint64_t>(args.get_int("seed", 0, 0));
  config.pad_token_id = args.get_int("pad-id", 0, 0);
  config.eos_token_id = args.has("eos-id") ? args.get_int("eos-id", -1, 0)
                        : tok              ? tok->special_id("<|endoftext|>")
                                           : -1;

  auto notice = [&](const std::string& s) {
    if (args.has("verbose")) log_info(s);
  };
  LoadedEngine le = load_or_build(args, "generate", notice);
  Generator gen(le.engine, static_cast<int>(args.get_int("threads", 0, 1, kMaxThreads)));
  if (config.eos_token_id >= gen.vocab_size()) config.eos_token_id = -1;  // cannot occur

  std::vector<std::vector<int64_t>> prompts;
  for (const std::string& t : texts) prompts.push_back(tok->encode(t));
  for (const std::string& l : id_lists) prompts.push_back(parse_id_list(l, "--prompt-ids"));
  for (size_t r = 0; r < prompts.size(); ++r) {
    int64_t room = gen.n_positions() - config.max_new_tokens;
    if (static_cast<int64_t>(prompts[r].size()) > room && args.has("truncate") && room > 0) {
      log_warning("prompt " + std::to_string(r) + " has " + std::to_string(prompts[r].size()) +
                  " tokens; keeping its last " + std::to_string(room) + " (--truncate)");
      prompts[r].erase(prompts[r].begin(), prompts[r].end() - room);
    }
  }

  std::vector<std::string> stops = args.all("stop");
  bool stream = args.has("stream") && format == "text" && tok && prompts.size() == 1;
  std::vector<std::string> text_so_far(prompts.size());
  std::optional<tokenizer::StreamDecoder> streamer;
  if (stream) streamer.emplace(*tok);
  auto on_token = [&](size_t row, int64_t id) {
    if (!tok) return true;
    if (stream) {
      std::string piece = streamer->push(id);
      std::fputs(piece.c_str(), stdout);
      std::fflush(stdout);
    }
    if (stops.empty()) return true;
    text_so_far[row] += tok->token_bytes(id);
    for (const std::string& s : stops) {
      if (text_so_far[row].size() >= s.size() &&
          text_so_far[row].compare(text_so_far[row].size() - s.size(), s.size(), s) == 0)
        return false;
    }
    return true;
  };
  if (stream) std::fputs(tok->decode(prompts[0]).c_str(), stdout);
  GenerationResult res = gen.generate(prompts, config, on_token);
  if (stream) std::printf("%s\n", streamer->finish().c_str());

  auto id_text = [](const std::vector<int64_t>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    return s;
  };
  const GenerationTimings& t = res.timings;
  if (format == "json") {
    std::string out = "{\"results\": [";
    for (size_t r = 0; r < prompts.size(); ++r) {
      out += std::string(r ? ", " : "") + "{\"prompt_ids\": [" + id_text(prompts[r]) +
             "], \"generated_ids\": [" + id_text(res.generated[r]) + "]";
      if (tok)
        out +=
            ", \"text\": " + json::quote(tok->decode(prompts[r]) + tok->decode(res.generated[r]));
      out += "}";
    }
    char timing[256];
    std::snprintf(timing, sizeof timing,
                  "], \"timings\": {\"prompt_tokens\": %lld, \"prefill_ms\": %.3f, "
                  "\"decode_ms_per_token\": %.3f, \"tokens_per_s\": %.1f}}",
                  static_cast<long long>(t.prompt_tokens), t.prefill_ms, t.decode_ms_per_token,
                  t.tokens_per_s);
    std::printf("%s%s\n", out.c_str(), timing);
  } else if (!stream) {
    for (size_t r = 0; r < prompts.size(); ++r) {
      if (tok)
        std::printf("%s%s\n", tok->decode(prompts[r]).c_str(),
                    tok->decode(res.generated[r]).c_str());
      else
        std::printf("[%s] -> [%s]\n", id_text(prompts[r]).c_str(),
                    id_text(res.generated[r]).c_str());
    }
  }
  std::fprintf(
      stderr, "[I] prompt tokens: %lld, prefill: %.2f ms, decode: %.2f ms/token, %.1f tokens/s\n",
      static_cast<long long>(t.prompt_tokens), t.prefill_ms, t.decode_ms_per_token, t.tokens_per_s);
  return 0;
}

}  // namespace gptrt::cli
