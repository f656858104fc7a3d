// Text generation with a KV cache on an engine whose plan is the recognised GPT-2 decoder:
// prefill over the prompts, then one-token decode steps; greedy or sampled, as Hugging Face
// `generate` does it (left padding, positions from the attention mask, the same logits
// processors in the same order).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gptrt/engine.h"

namespace gptrt {

struct GenerationConfig {
  int64_t max_new_tokens = 20;
  bool do_sample = false;           // false: greedy (argmax), as Hugging Face's default
  float temperature = 1.0f;         // sampling only
  int64_t top_k = 0;                // sampling only; 0 = off
  float top_p = 1.0f;               // sampling only; 1 = off
  float repetition_penalty = 1.0f;  // 1 = off; applied to every token in the row so far
  uint64_t seed = 0;                // same seed, same tokens
  int64_t eos_token_id = -1;        // a row that emits it stops (-1: none)
  int64_t pad_token_id = 0;         // fills prompts on the left and finished rows
};

struct GenerationTimings {
  int64_t prompt_tokens = 0;  // real (unpadded) prompt tokens, all rows
  double prefill_ms = 0;
  double decode_ms_per_token = 0;  // per decode step (one token for every row)
  double tokens_per_s = 0;         // generated tokens (all rows) per second of prefill + decode
};

struct GenerationResult {
  std::vector<std::vector<int64_t>> generated;  // per prompt: the new tokens (no padding)
  GenerationTimings timings;
};

/// Called for each new token of each unfinished row; return false to stop that row (stop
/// strings).
using TokenCallback = std::function<bool(size_t row, int64_t token)>;

class Generator {
 public:
  /// Needs an engine whose decoder was recognised (cpu backend); throws gptrt::Error saying why
  /// not otherwise. `threads` as for ExecutionContext.
  Generator(std::shared_ptr<const Engine> engine, int threads = 0);
  ~Generator();

  /// Generates for a batch of prompts of any lengths (left-padded inside). Throws for empty
  /// prompts, ids outside the vocabulary, or prompt + max_new_tokens beyond n_positions.
  GenerationResult generate(const std::vector<std::vector<int64_t>>& prompts,
                            const GenerationConfig& config, const TokenCallback& on_token = {});

  /// Logits [batch, vocab] of the last step run (for tests: a decode step against a full re-run).
  /// Greedy decoding on the GPU may run up to 8 steps per CUDA graph (after its first 256 steps
  /// on one cache), so after a stop (end of text, a stop string) that may be up to 7 steps past
  /// the last token returned.
  const std::vector<float>& last_logits() const;
  int64_t vocab_size() const;
  int64_t n_positions() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gptrt
