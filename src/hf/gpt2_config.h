// GPT-2 family configuration: Hugging Face config.json, and the standard sizes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/checked.h"

namespace gptrt::hf {

/// The fields of a GPT-2 config.json gptrt uses.
struct Gpt2Config {
  int64_t n_layer = 0, n_embd = 0, n_head = 0, vocab_size = 0, n_positions = 0;
  int64_t n_inner = 0;  // 0 = 4 * n_embd
  double layer_norm_epsilon = 1e-5;
  std::string activation_function = "gelu_new";
  bool tie_word_embeddings = true;
  bool scale_attn_weights = true;
  bool scale_attn_by_inverse_layer_idx = false;  // scores of layer l also divided by l + 1
  bool reorder_and_upcast_attn = false;          // FP32 attention: what gptrt computes anyway

  int64_t inner() const {
    return n_inner > 0 ? n_inner : checked::mul(4, n_embd, "the GPT-2 config's n_embd");
  }
  /// Number of parameters (tied head counted once).
  int64_t parameter_count() const;
  /// config.json text as transformers writes it for GPT2LMHeadModel.
  std::string to_json() const;
};

/// activation_function values gptrt builds (transformers' ACT2FN names for GPT-2's MLP).
const std::vector<std::string>& supported_activations();

/// Reads DIR/config.json; throws gptrt::Error for a missing file, another architecture,
/// missing fields, a flag of the wrong type or a value gptrt does not implement, naming it.
Gpt2Config read_config(const std::string& dir);

/// A standard size: distilgpt2, gpt2, gpt2-medium, gpt2-large, gpt2-xl. Throws for others.
Gpt2Config preset(const std::string& arch);
/// Names accepted by preset().
std::vector<std::string> preset_names();

}  // namespace gptrt::hf
