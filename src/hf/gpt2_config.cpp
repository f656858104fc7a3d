#include "hf/gpt2_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/checked.h"
#include "core/json.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::hf {

int64_t Gpt2Config::parameter_count() const {
  // Checked: a config's sizes come from a file (n_embd 2^62 must not wrap).
  const std::string what = "the GPT-2 config (n_embd " + std::to_string(n_embd) + ", vocab_size " +
                           std::to_string(vocab_size) + ", n_layer " + std::to_string(n_layer) +
                           ")";
  auto mul = [&](int64_t a, int64_t b) { return checked::mul(a, b, what); };
  auto add = [&](int64_t a, int64_t b) { return checked::add(a, b, what); };
  int64_t c = n_embd, f = inner();
  int64_t per_layer = add(add(add(mul(4, c), add(mul(mul(c, 3), c), mul(3, c))), add(mul(c, c), c)),
                          add(add(mul(c, f), f), add(mul(f, c), c)));
  int64_t table = mul(vocab_size, c);
  int64_t n = add(add(add(table, mul(n_positions, c)), mul(n_layer, per_layer)), mul(2, c));
  return tie_word_embeddings ? n : add(n, table);
}

std::string Gpt2Config::to_json() const {
  std::ostringstream o;
  o << "{\n"
    << "  \"activation_function\": " << json::quote(activation_function) << ",\n"
    << "  \"architectures\": [\"GPT2LMHeadModel\"],\n"
    << "  \"attn_pdrop\": 0.1,\n  \"bos_token_id\": 50256,\n  \"embd_pdrop\": 0.1,\n  "
       "\"eos_token_id\": 50256,\n"
    << "  \"initializer_range\": 0.02,\n"
    << "  \"layer_norm_epsilon\": " << layer_norm_epsilon << ",\n"
    << "  \"model_type\": \"gpt2\",\n"
    << "  \"n_ctx\": " << n_positions
    << ",\n"  // (as Hugging Face's GPT-2 configs; converters read it)
    << "  \"n_embd\": " << n_embd << ",\n  \"n_head\": " << n_head << ",\n"
    << "  \"n_inner\": " << (n_inner > 0 ? std::to_string(n_inner) : "null") << ",\n"
    << "  \"n_layer\": " << n_layer << ",\n  \"n_positions\": " << n_positions << ",\n"
    << "  \"reorder_and_upcast_attn\": " << (reorder_and_upcast_attn ? "true" : "false") << ",\n"
    << "  \"resid_pdrop\": 0.1,\n"
    << "  \"scale_attn_by_inverse_layer_idx\": "
    << (scale_attn_by_inverse_layer_idx ? "true" : "false") << ",\n"
    << "  \"scale_attn_weights\": " << (scale_attn_weights ? "true" : "false") << ",\n"
    << "  \"tie_word_embeddings\": " << (tie_word_embeddings ? "true" : "false") << ",\n"
    << "  \"vocab_size\": " << vocab_size << "\n}\n";
  return o.str();
}

const std::vector<std::string>& supported_activations() {
  static const std::vector<std::string> names = {
      "gelu_new",    "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate", "gelu",
      "gelu_python", "quick_gelu",        "relu",      "relu6",         "silu",
      "swish",       "sigmoid",           "tanh",      "linear"};
  return names;
}

Gpt2Config read_config(const std::string& dir) {
  std::string path = dir + "/config.json";
  if (!std::filesystem::exists(path))
    throw Error(ErrorCode::kIoError,
                "cannot open '" + path +
                    "'; a Hugging Face model folder has config.json and model.safetensors");
  std::string text = platform::read_text_file(path);
  json::Value v = json::parse(text, path);
  auto field = [&](const char* name) -> int64_t {
    const json::Value* f = json::find(v, name);
    std::optional<int64_t> n = f ? json::as_int64(*f) : std::nullopt;
    if (!n || *n <= 0) {
      throw Error(ErrorCode::kParseError,
                  "'" + path + "': field '" + name + "' is missing or not a positive integer");
    }
    return *n;
  };
  const json::Value* type = json::find(v, "model_type");
  if (!type || !type->is_string() || type->get<std::string>() != "gpt2") {
    throw Error(
        ErrorCode::kUnsupported,
        "'" + path + "' has model_type " +
            (type && type->is_string() ? "'" + type->get<std::string>() + "'" : "missing") +
            "; gptrt runs the GPT-2 family (model_type \"gpt2\": distilgpt2, gpt2 ... gpt2-xl)");
  }
  Gpt2Config c;
  c.n_layer = field("n_layer");
  c.n_embd = field("n_embd");
  c.n_head = field("n_head");
  c.vocab_size = field("vocab_size");
  c.n_positions = field("n_positions");
  if (const json::Value* f = json::find(v, "n_inner"))
    if (std::optional<int64_t> n = json::as_int64(*f)) c.n_inner = *n;
  if (const json::Value* f = json::find(v, "layer_norm_epsilon"); f && f->is_number())
    c.layer_norm_epsilon = f->get<double>();
  if (const json::Value* f = json::find(v, "activation_function"); f && !f->is_null()) {
    if (!f->is_string())
      throw Error(ErrorCode::kParseError, "'" + path + "': activation_function is not a string");
    c.activation_function = f->get<std::string>();
  }
  const auto& acts = supported_activations();
  if (std::find(acts.begin(), acts.end(), c.activation_function) == acts.end()) {
    std::string list;
    for (const std::string& a : acts) list += (list.empty() ? "" : ", ") + a;
    throw Error(ErrorCode::kUnsupported, "'" + path + "': activation_function '" +
                                             c.activation_function + "' is not one gptrt builds (" +
                                             list + ")");
  }
  // Flags that change the forward pass: read strictly (a wrong type is an error, not ignored).
  auto flag = [&](const char* name, bool& into) {
    const json::Value* f = json::find(v, name);
    if (!f || f->is_null()) return;
    if (!f->is_boolean())
      throw Error(ErrorCode::kParseError,
                  "'" + path + "': " + name + " must be true or false, found " + f->dump());
    into = f->get<bool>();
  };
  flag("tie_word_embeddings", c.tie_word_embeddings);
  flag("scale_attn_weights", c.scale_attn_weights);
  flag("scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx);
  flag("reorder_and_upcast_attn", c.reorder_and_upcast_attn);
  bool cross = false;
  flag("add_cross_attention", cross);
  if (cross)
    throw Error(ErrorCode::kUnsupported,
                "'" + path +
                    "': add_cross_attention is true (an encoder-decoder GPT-2); gptrt runs the "
                    "decoder-only GPT-2 language model");
  if (!(c.layer_norm_epsilon > 0) || !std::isfinite(c.layer_norm_epsilon))
    throw Error(ErrorCode::kParseError,
                "'" + path + "': layer_norm_epsilon must be a positive number, found " +
                    std::to_string(c.layer_norm_epsilon) + " (GPT-2 uses 1e-05)");
  if (c.n_inner != 0 && c.n_inner < 1)
    throw Error(ErrorCode::kParseError,
                "'" + path + "': n_inner must be a positive integer or null, found " +
                    std::to_string(c.n_inner));
  c.parameter_count();  // sizes whose products overflow are refused here
  if (c.n_embd % c.n_head != 0) {
    throw Error(ErrorCode::kParseError, "'" + path + "': n_embd " + std::to_string(c.n_embd) +
                                            " is not a multiple of n_head " +
                                            std::to_string(c.n_head));
  }
  return c;
}

Gpt2Config preset(const std::string& arch) {
  Gpt2Config c;
  c.vocab_size = 50257;
  c.n_positions = 1024;
  struct Size {
    const char* name;
    int64_t layers, embd, heads;
  };
  static const Size kSizes[] = {{"distilgpt2", 6, 768, 12},
                                {"gpt2", 12, 768, 12},
                                {"gpt2-medium", 24, 1024, 16},
                                {"gpt2-large", 36, 1280, 20},
                                {"gpt2-xl", 48, 1600, 25}};
  for (const Size& s : kSizes) {
    if (arch == s.name) {
      c.n_layer = s.layers;
      c.n_embd = s.embd;
      c.n_head = s.heads;
      return c;
    }
  }
  std::string names;
  for (const std::string& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  throw Error(ErrorCode::kInvalidArgument,
              "unknown architecture '" + arch + "'; choose one of " + names);
}

std::vector<std::string> preset_names() {
  return {"distilgpt2", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"};
}

}  // namespace gptrt::hf
