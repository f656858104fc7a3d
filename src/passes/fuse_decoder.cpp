// Recognises a GPT-2 decoder from its weights' places in the graph (two embedding lookups,
// 2L+1 LayerNorms, 4L linear layers and an optional LM head, in that order), builds the
// canonical fused graph from them, and keeps it only if it computes what the original graph
// computes on random inputs with padded rows.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <sstream>

#include "backends/reference/fused_ops.h"
#include "core/half.h"
#include "gptrt/error.h"
#include "ir/shape_inference.h"
#include "passes/passes.h"
#include "passes/pattern.h"
#include "runtime/executor.h"

namespace gptrt::passes {
namespace {

// Follows ops that only move or retype indices back to where they come from.
int trace_index_source(const ir::Graph& g, const Uses& uses, int id) {
  static const char* kThrough[] = {"Reshape", "Cast",    "Unsqueeze",
                                   "Squeeze", "Flatten", "Identity"};
  while (id >= 0 && uses.producer[static_cast<size_t>(id)] >= 0) {
    const ir::Node& n = g.nodes[static_cast<size_t>(uses.producer[static_cast<size_t>(id)])];
    bool through = n.domain.empty() && std::any_of(std::begin(kThrough), std::end(kThrough),
                                                   [&](const char* op) { return n.op_type == op; });
    if (!through) return -1;
    id = n.inputs[0];
  }
  return id;
}

const Tensor& constant_of(const ir::Graph& g, const ir::Node& n, size_t i) {
  return g.values[static_cast<size_t>(n.inputs[i])].constant;
}

// A [K, N] float32 copy of a Linear's weight.
Tensor weight_kn(const ir::Graph& g, const ir::Node& lin) {
  const Tensor& w = constant_of(g, lin, 1);
  if (lin.attr_int("transB", 0) == 0) return w;
  int64_t n = w.dim(0), k = w.dim(1);
  Tensor t = Tensor::uninitialized(DType::kFloat32, {k, n});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) t.data_mut<float>()[j * n + i] = w.data<float>()[i * k + j];
  return t;
}

int64_t linear_k(const ir::Graph& g, const ir::Node& lin) {
  const Tensor& w = constant_of(g, lin, 1);
  return lin.attr_int("transB", 0) ? w.dim(1) : w.dim(0);
}
int64_t linear_n(const ir::Graph& g, const ir::Node& lin) {
  const Tensor& w = constant_of(g, lin, 1);
  return lin.attr_int("transB", 0) ? w.dim(0) : w.dim(1);
}

// The canonical graph under construction.
struct Builder {
  ir::Graph g;
  int constant(const std::string& name, Tensor t) { return g.add_constant(name, std::move(t)); }
  std::vector<int> nodes(const std::string& name, const std::string& op, bool fused,
                         std::vector<int> inputs, std::map<std::string, ir::Attribute> attrs,
                         const std::vector<std::string>& outs) {
    ir::Node n;
    n.name = name;
    n.op_type = op;
    if (fused) n.domain = kFusedDomain;
    n.inputs = std::move(inputs);
    while (!n.inputs.empty() && n.inputs.back() < 0) n.inputs.pop_back();
    for (const std::string& out : outs) {
      ir::Value v;
      v.name = out;
      n.outputs.push_back(g.add_value(std::move(v)));
    }
    n.attrs = std::move(attrs);
    g.nodes.push_back(std::move(n));
    ir::infer_node(g, g.nodes.back());
    return g.nodes.back().outputs;
  }
  int node(const std::string& name, const std::string& op, bool fused, std::vector<int> inputs,
           std::map<std::string, ir::Attribute> attrs, const std::string& out) {
    return nodes(name, op, fused, std::move(inputs), std::move(attrs), {out})[0];
  }
};

// Element i of an integer, float or bool input of the check set to x.
void set_element(Tensor& t, int64_t i, int64_t x) {
  switch (t.dtype()) {
    case DType::kInt64:
      t.data_mut<int64_t>()[i] = x;
      break;
    case DType::kInt32:
      t.data_mut<int32_t>()[i] = static_cast<int32_t>(x);
      break;
    case DType::kFloat32:
      t.data_mut<float>()[i] = static_cast<float>(x);
      break;
    default:
      static_cast<uint8_t*>(t.raw_mut())[i] = x != 0;
      break;
  }
}

// Random inputs for the check: ids, a left-padded mask (row r padded by r), positions 0..S-1.
std::map<std::string, Tensor> check_inputs(const ir::Graph& g, const DecoderInfo& d, int64_t b,
                                           int64_t s, std::vector<char>* valid) {
  std::mt19937_64 rng(20261126);
  std::map<std::string, Tensor> in;
  valid->assign(static_cast<size_t>(b * s), 1);
  for (int64_t r = 0; r < b; ++r)
    for (int64_t t = 0; t < std::min(r, s - 1); ++t) (*valid)[static_cast<size_t>(r * s + t)] = 0;
  for (int id : g.inputs) {
    const ir::Value& v = g.values[static_cast<size_t>(id)];
    Tensor t(v.dtype, {b, s});
    for (int64_t i = 0; i < b * s; ++i) {
      int64_t x = i % s;  // positions, and anything unused
      if (v.name == d.input_ids) x = static_cast<int64_t>(rng() % static_cast<uint64_t>(d.vocab));
      if (v.name == d.attention_mask) x = (*valid)[static_cast<size_t>(i)];
      set_element(t, i, x);
    }
    in[v.name] = t;
  }
  return in;
}

// Runs `g` with only `output` kept (rows of the output's last dim), on the reference kernels.
Tensor run_to(ir::Graph g, int output, const std::map<std::string, Tensor>& inputs) {
  g.outputs = {output};
  eliminate_dead_code(g);
  runtime::Executor ex(g);
  return ex.run(inputs).at(0);
}

// Largest |a - b| over valid rows, relative to max(1, |a|); -1 when the sizes differ.
double compare_rows(const Tensor& a, const Tensor& b, const std::vector<char>& valid) {
  if (a.numel() != b.numel() || a.numel() % static_cast<int64_t>(valid.size()) != 0) return -1;
  int64_t cols = a.numel() / static_cast<int64_t>(valid.size());
  double worst = 0, scale = 1;
  for (int64_t i = 0; i < a.numel(); ++i)
    scale = std::max(scale, std::fabs(double(a.data<float>()[i])));
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (!valid[static_cast<size_t>(i / cols)]) continue;
    double diff = std::fabs(double(a.data<float>()[i]) - b.data<float>()[i]);
    if (!(diff <= 1e30)) return INFINITY;  // NaN
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

// A past key or value of a with-past export and where it goes.
struct PastIO {
  int input = -1;    // the graph input
  int gated = -1;    // the gptrt.CacheGate output reading it (merged decoders), else -1
  int concat = -1;   // index of the Concat that puts it ahead of the new keys or values
  int present = -1;  // the graph output holding the Concat's result
  int64_t layer = -1;
  bool is_value = false;
};

bool is_past_input(const ir::Value& v) {
  return v.shape.rank_known && v.shape.dims.size() == 4 &&
         (v.dtype == DType::kFloat32 || v.dtype == DType::kFloat16);
}

// The single reader of `id` when it is `op` (default domain, or `domain`), else -1.
int only_reader(const ir::Graph& g, const Uses& uses, int id, const std::string& op,
                const std::string& domain = "") {
  const auto& readers = uses.consumers[static_cast<size_t>(id)];
  if (readers.size() != 1) return -1;
  const ir::Node& n = g.nodes[static_cast<size_t>(readers[0])];
  return n.op_type == op && n.domain == domain ? readers[0] : -1;
}

// Follows `id` forward through Casts (and one-input Concats, which copy) to the Concat that puts
// it ahead of something; -1 if none.
int concat_reading(const ir::Graph& g, const Uses& uses, int id) {
  for (int hops = 0; hops < 4; ++hops) {
    int next = -1;
    for (int r : uses.consumers[static_cast<size_t>(id)]) {
      const ir::Node& n = g.nodes[static_cast<size_t>(r)];
      if (!n.domain.empty() || n.op_type != "Concat") continue;
      if (n.inputs.size() > 1) return r;
      next = n.outputs[0];
    }
    if (next < 0) {
      int cast = only_reader(g, uses, id, "Cast");
      if (cast < 0) return -1;
      next = g.nodes[static_cast<size_t>(cast)].outputs[0];
    }
    id = next;
  }
  return -1;
}

// Follows output `id` back through Identity and Cast to the Concat producing it; -1 if none.
int concat_producing(const ir::Graph& g, const Uses& uses, int id) {
  for (int hops = 0; hops < 4 && id >= 0; ++hops) {
    int p = uses.producer[static_cast<size_t>(id)];
    if (p < 0) return -1;
    const ir::Node& n = g.nodes[static_cast<size_t>(p)];
    if (!n.domain.empty()) return -1;
    if (n.op_type == "Concat") return p;
    if (n.op_type != "Identity" && n.op_type != "Cast") return -1;
    id = n.inputs[0];
  }
  return -1;
}

// The index in `targets` (node indices) of the node reached walking back from `id` through
// each producer's first input (the data path of Transpose, Reshape, Split, Slice...), or -1.
int reaches_back(const ir::Graph& g, const Uses& uses, int id, const std::vector<size_t>& targets) {
  for (int hops = 0; hops < 16 && id >= 0; ++hops) {
    int p = uses.producer[static_cast<size_t>(id)];
    if (p < 0) return -1;
    for (size_t k = 0; k < targets.size(); ++k)
      if (targets[k] == static_cast<size_t>(p)) return static_cast<int>(k);
    const ir::Node& n = g.nodes[static_cast<size_t>(p)];
    id = n.inputs.empty() ? -1 : n.inputs[0];
  }
  return -1;
}

// True when the keys or values out of Concat `c` are the values: the first MatMul they reach
// multiplies them by attention weights (a Softmax, possibly cast).
bool concat_holds_values(const ir::Graph& g, const Uses& uses, int c) {
  std::vector<int> frontier{g.nodes[static_cast<size_t>(c)].outputs[0]};
  for (int hops = 0; hops < 6 && !frontier.empty(); ++hops) {
    std::vector<int> next;
    for (int id : frontier) {
      for (int r : uses.consumers[static_cast<size_t>(id)]) {
        const ir::Node& n = g.nodes[static_cast<size_t>(r)];
        if (n.domain.empty() && n.op_type == "MatMul") {
          int w = n.inputs[0];
          for (int back = 0; back < 4 && w >= 0; ++back) {
            int p = uses.producer[static_cast<size_t>(w)];
            if (p < 0) break;
            const ir::Node& pn = g.nodes[static_cast<size_t>(p)];
            if (pn.op_type == "Softmax") return true;
            if (pn.op_type != "Cast" && pn.op_type != "Identity" && pn.op_type != "Dropout") break;
            w = pn.inputs[0];
          }
          return false;
        }
        for (int o : n.outputs)
          if (o >= 0) next.push_back(o);
      }
    }
    frontier = std::move(next);
  }
  return false;
}

// Inputs for checking a with-past graph: ids, a mask over past + new positions (row r
// left-padded by r), positions continuing from the past, random pasts, the use-cache flag.
std::map<std::string, Tensor> past_check_inputs(const ir::Graph& g, const DecoderInfo& d, int64_t b,
                                                int64_t s, int64_t past, bool flag,
                                                std::vector<char>* valid) {
  std::mt19937_64 rng(20261207);
  std::normal_distribution<float> normal(0.f, 1.f);
  const int64_t seen = (flag ? past : 0) + s;  // positions the mask covers
  std::vector<char> on(static_cast<size_t>(b * seen), 1);
  for (int64_t r = 0; r < b; ++r)
    for (int64_t t = 0; t < std::min(r, seen - 1); ++t) on[static_cast<size_t>(r * seen + t)] = 0;
  valid->assign(static_cast<size_t>(b * s), 1);
  for (int64_t r = 0; r < b; ++r)
    for (int64_t t = 0; t < s; ++t)
      (*valid)[static_cast<size_t>(r * s + t)] = on[static_cast<size_t>(r * seen + seen - s + t)];
  std::map<std::string, Tensor> in;
  for (int id : g.inputs) {
    const ir::Value& v = g.values[static_cast<size_t>(id)];
    if (v.name == d.cache_flag) {
      Tensor t(DType::kBool, {1});
      static_cast<uint8_t*>(t.raw_mut())[0] = flag ? 1 : 0;
      in[v.name] = t;
      continue;
    }
    if (is_past_input(v)) {
      auto dim = [&](size_t k, int64_t fallback) {
        return v.shape.dims[k].is_known() ? v.shape.dims[k].value : fallback;
      };
      Tensor t(DType::kFloat32, {b, dim(1, d.heads), past, dim(3, d.head_size)});
      for (int64_t i = 0; i < t.numel(); ++i) t.data_mut<float>()[i] = normal(rng);
      in[v.name] = v.dtype == DType::kFloat32 ? t : narrow_from_float32(t, v.dtype);
      continue;
    }
    const bool is_mask = v.name == d.attention_mask;
    const int64_t cols = is_mask ? seen : s;
    Tensor t(v.dtype, {b, cols});
    for (int64_t i = 0; i < b * cols; ++i) {
      int64_t x = seen - s + i % cols;  // positions, and anything unused
      if (v.name == d.input_ids) x = static_cast<int64_t>(rng() % static_cast<uint64_t>(d.vocab));
      if (is_mask) x = on[static_cast<size_t>(i)];
      set_element(t, i, x);
    }
    in[v.name] = t;
  }
  return in;
}

// Largest relative difference between what `fused` and `original` give for each of the fused
// graph's outputs (by name): the first over valid rows, the rest (presents) entirely.
double compare_graphs(const ir::Graph& original, const ir::Graph& fused,
                      const std::map<std::string, Tensor>& inputs, const std::vector<char>& valid) {
  std::map<std::string, Tensor> fused_in;
  for (int id : fused.inputs) {
    const std::string& name = fused.values[static_cast<size_t>(id)].name;
    fused_in[name] = inputs.at(name);
  }
  std::vector<Tensor> got = runtime::Executor(fused).run(fused_in);
  std::vector<Tensor> all = runtime::Executor(original).run(inputs);
  double worst = 0;
  for (size_t k = 0; k < fused.outputs.size(); ++k) {
    const std::string& name = fused.values[static_cast<size_t>(fused.outputs[k])].name;
    int at = -1;
    for (size_t j = 0; j < original.outputs.size(); ++j)
      if (original.values[static_cast<size_t>(original.outputs[j])].name == name)
        at = static_cast<int>(j);
    if (at < 0) return -1;
    Tensor want = all[static_cast<size_t>(at)];
    if (want.dtype() != DType::kFloat32) want = widen_to_float32(want);
    Tensor have = got[k];
    if (have.dtype() != DType::kFloat32) have = widen_to_float32(have);
    std::vector<char> rows = valid;
    if (k > 0 && want.rank() > 0 && want.shape().back() > 0)
      rows.assign(static_cast<size_t>(want.numel() / want.shape().back()), 1);
    double diff = want.numel() == 0 && have.numel() == 0 ? 0 : compare_rows(have, want, rows);
    if (diff < 0) return -1;
    worst = std::max(worst, diff);
  }
  return worst;
}

}  // namespace

std::string DecoderInfo::summary() const {
  if (!recognised) return "GPT-2 decoder not recognised: " + blocker;
  std::ostringstream os;
  os << "GPT-2 decoder: " << layers << " layers, " << heads << " heads x " << head_size
     << ", hidden " << hidden << ", MLP " << inner << " (" << activation << "), epsilon " << epsilon
     << ", " << n_positions << " positions, "
     << (lm_head ? std::string(tied_head ? "tied" : "untied") + " LM head over " +
                       std::to_string(vocab) + " tokens"
                 : std::string("no LM head (last hidden state)"))
     << "; inputs " << input_ids << (attention_mask.empty() ? "" : ", " + attention_mask)
     << (position_ids.empty() ? "" : ", " + position_ids)
     << (form == "plain"
             ? std::string()
             : "; " + form + " export" + (cache_flag.empty() ? "" : " (If on " + cache_flag + ")") +
                   (past_kept ? ", past inputs and presents kept"
                              : ", past inputs dropped (the decoder keeps its own "
                                "KV cache)"))
     << (widened_from.empty() ? std::string()
                              : "; a " + widened_from +
                                    " export, fused in float32 (weights widened exactly; logits "
                                    "float32)")
     << (contrib_ops ? "; " + std::to_string(contrib_ops) +
                           " ONNX Runtime contrib ops read as the ONNX ops they stand for"
                     : std::string())
     << "; matches the original graph to " << verified_max_diff;
  return os.str();
}

DecoderInfo fuse_decoder(ir::Graph& g, bool keep_past, const ir::Graph* original) {
  DecoderInfo d;
  const std::vector<int> outputs = g.outputs;  // a presents-only graph drops them while checked
  auto blocked = [&](const std::string& why) {
    d.blocker = why;
    d.recognised = false;
    g.outputs = outputs;
    return d;
  };
  Uses uses(g);

  // With-past and merged exports: each past key and value (through its CacheGate in a merged
  // decoder) is concatenated ahead of the new ones, and the result is a graph output (present).
  std::vector<PastIO> pasts;
  for (int id : g.inputs) {
    const ir::Value& v = g.values[static_cast<size_t>(id)];
    if (!is_past_input(v) || uses.consumers[static_cast<size_t>(id)].empty()) continue;
    PastIO p;
    p.input = id;
    int gate = only_reader(g, uses, id, "CacheGate", kFusedDomain);
    if (gate >= 0) {
      p.gated = g.nodes[static_cast<size_t>(gate)].outputs[0];
      d.cache_flag =
          g.values[static_cast<size_t>(g.nodes[static_cast<size_t>(gate)].inputs[1])].name;
    }
    p.concat = concat_reading(g, uses, p.gated >= 0 ? p.gated : id);
    if (p.concat < 0)
      return blocked("input '" + v.name +
                     "' looks like a past key or value but is not concatenated with new ones");
    pasts.push_back(p);
  }
  // A first-step export without past inputs may still give presents (optimum's legacy
  // decoder_model.onnx): the plain decoder, which gives the logits only, is what it can become.
  const bool presents_only = pasts.empty() && !keep_past && g.outputs.size() > 1;
  for (size_t k = 1; k < g.outputs.size() && !presents_only; ++k) {
    int c = concat_producing(g, uses, g.outputs[k]);
    auto it = std::find_if(pasts.begin(), pasts.end(), [&](const PastIO& p) {
      return c >= 0 && p.concat == c && p.present < 0;
    });
    if (it == pasts.end())
      return blocked("output '" + g.values[static_cast<size_t>(g.outputs[k])].name +
                     "' is neither the logits nor the present key or value of a past input");
    it->present = g.outputs[k];
  }
  if (presents_only) {
    d.form = "presents-only";
    g.outputs.resize(1);
    uses = Uses(g);
  }
  if (g.outputs.size() != 1 + pasts.size())
    return blocked("the graph has " + std::to_string(g.outputs.size()) +
                   " outputs; a GPT-2 forward has the logits and, with a past, one present per "
                   "past key and value (" +
                   std::to_string(pasts.size()) + " past inputs)");
  if (!pasts.empty()) d.form = d.cache_flag.empty() ? "with-past" : "merged";
  auto is_past_or_flag = [&](int id) {
    return g.values[static_cast<size_t>(id)].name == d.cache_flag ||
           std::any_of(pasts.begin(), pasts.end(), [&](const PastIO& p) { return p.input == id; });
  };

  // Embeddings: the two lookups in constant float tables.
  std::vector<const ir::Node*> gathers;
  for (const ir::Node& n : g.nodes) {
    const ir::Value* t = g.input(n, 0);
    if (n.domain.empty() && n.op_type == "Gather" && n.attr_int("axis", 0) == 0 && t &&
        t->is_constant() && t->dtype == DType::kFloat32 && t->constant.rank() == 2)
      gathers.push_back(&n);
  }
  if (gathers.size() != 2)
    return blocked("expected two embedding lookups (token and position tables), found " +
                   std::to_string(gathers.size()));
  // The token lookup: the one whose indices are a graph input where only one's are (positions
  // are often computed from the mask); where both are inputs, the one not named position_ids;
  // else the larger table (vocabularies are usually larger than the position count, not always).
  auto input_source = [&](const ir::Node* n) {
    int src = trace_index_source(g, uses, n->inputs[1]);
    return src >= 0 && std::find(g.inputs.begin(), g.inputs.end(), src) != g.inputs.end() ? src
                                                                                          : -1;
  };
  auto named_positions = [&](int src) {
    return src >= 0 && g.values[static_cast<size_t>(src)].name == "position_ids";
  };
  const int src0 = input_source(gathers[0]), src1 = input_source(gathers[1]);
  if ((src0 < 0) != (src1 < 0)) {
    if (src0 < 0) std::swap(gathers[0], gathers[1]);
  } else if (named_positions(src0) != named_positions(src1)) {
    if (named_positions(src0)) std::swap(gathers[0], gathers[1]);
  } else if (constant_of(g, *gathers[0], 0).dim(0) < constant_of(g, *gathers[1], 0).dim(0)) {
    std::swap(gathers[0], gathers[1]);
  }
  const Tensor& wte = constant_of(g, *gathers[0], 0);
  const Tensor& wpe = constant_of(g, *gathers[1], 0);
  int64_t e = wte.dim(1);
  if (wpe.dim(1) != e) return blocked("the token and position tables differ in width");
  d.hidden = e;
  d.vocab = wte.dim(0);
  d.n_positions = wpe.dim(0);
  int ids = trace_index_source(g, uses, gathers[0]->inputs[1]);
  if (ids < 0 || std::find(g.inputs.begin(), g.inputs.end(), ids) == g.inputs.end())
    return blocked("the token lookup's indices are not a graph input");
  d.input_ids = g.values[static_cast<size_t>(ids)].name;
  int pos = trace_index_source(g, uses, gathers[1]->inputs[1]);
  bool pos_input = pos >= 0 && std::find(g.inputs.begin(), g.inputs.end(), pos) != g.inputs.end();
  if (pos_input) d.position_ids = g.values[static_cast<size_t>(pos)].name;
  int mask = -1;
  for (int id : g.inputs) {
    if (id == ids || (pos_input && id == pos) || uses.consumers[static_cast<size_t>(id)].empty() ||
        is_past_or_flag(id))
      continue;
    const ir::Value& v = g.values[static_cast<size_t>(id)];
    if (mask >= 0 || !v.shape.rank_known || v.shape.dims.size() != 2)
      return blocked("input '" + v.name +
                     "' is neither token ids, an attention mask nor positions");
    mask = id;
  }
  if (mask >= 0) d.attention_mask = g.values[static_cast<size_t>(mask)].name;

  // LayerNorms and linear layers in order.
  std::vector<const ir::Node*> lns, lins;
  std::vector<size_t> ln_at, lin_at;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& n = g.nodes[i];
    if (n.domain.empty() && n.op_type == "LayerNormalization") {
      const ir::Value* s = g.input(n, 1);
      const ir::Value* b = g.input(n, 2);
      if (!s || !b || !s->is_constant() || !b->is_constant() || s->constant.numel() != e ||
          b->constant.numel() != e || s->dtype != DType::kFloat32 || n.attr_int("axis", -1) != -1 ||
          (n.outputs.size() > 1 && n.outputs[1] >= 0))
        return blocked(n.describe() +
                       " is not a LayerNorm over the hidden size with constant scale and bias");
      lns.push_back(&n);
      ln_at.push_back(i);
    } else if (n.domain == kFusedDomain && n.op_type == "Linear") {
      lins.push_back(&n);
      lin_at.push_back(i);
    }
  }
  if (lns.size() < 3 || lns.size() % 2 != 1)
    return blocked("found " + std::to_string(lns.size()) +
                   " LayerNorms, a decoder of L layers has 2L+1");
  int64_t layers = static_cast<int64_t>(lns.size() / 2);
  d.layers = layers;
  d.lm_head = lins.size() == static_cast<size_t>(4 * layers + 1);
  if (!d.lm_head && lins.size() != static_cast<size_t>(4 * layers))
    return blocked("found " + std::to_string(lins.size()) + " linear layers, " +
                   std::to_string(layers) + " decoder layers have " + std::to_string(4 * layers) +
                   " (+1 LM head)");
  d.inner = linear_n(g, *lins[2]);
  int64_t f = d.inner;
  for (int64_t l = 0; l < layers; ++l) {
    const int64_t want[4][2] = {{e, 3 * e}, {e, e}, {e, f}, {f, e}};
    for (int j = 0; j < 4; ++j) {
      const ir::Node& lin = *lins[static_cast<size_t>(4 * l + j)];
      if (linear_k(g, lin) != want[j][0] || linear_n(g, lin) != want[j][1] || lin.inputs.size() < 3)
        return blocked("layer " + std::to_string(l) + ": " + lin.describe() +
                       " is not the expected " + std::to_string(want[j][0]) + "x" +
                       std::to_string(want[j][1]) + " linear layer with bias");
    }
    size_t a = static_cast<size_t>(4 * l);
    if (!(ln_at[2 * l] < lin_at[a] && lin_at[a + 1] < ln_at[2 * l + 1] &&
          ln_at[2 * l + 1] < lin_at[a + 2]))
      return blocked("layer " + std::to_string(l) +
                     ": its LayerNorms and linear layers are not in GPT-2 order");
  }
  // Which layer's keys or values each past extends: the QKV projection its Concat's new part
  // comes from; keys or values: what the first MatMul after the Concat multiplies.
  std::vector<std::array<const PastIO*, 2>> layer_past(static_cast<size_t>(layers),
                                                       {nullptr, nullptr});
  if (!pasts.empty()) {
    std::vector<size_t> qkv_at;
    for (int64_t l = 0; l < layers; ++l) qkv_at.push_back(lin_at[static_cast<size_t>(4 * l)]);
    for (PastIO& p : pasts) {
      const std::string& name = g.values[static_cast<size_t>(p.input)].name;
      for (int in : g.nodes[static_cast<size_t>(p.concat)].inputs)
        if (p.layer < 0 && in >= 0) p.layer = reaches_back(g, uses, in, qkv_at);
      if (p.layer < 0)
        return blocked("cannot tell which layer's keys or values past input '" + name +
                       "' extends");
      p.is_value = concat_holds_values(g, uses, p.concat);
      const PastIO*& slot = layer_past[static_cast<size_t>(p.layer)][p.is_value ? 1 : 0];
      if (slot)
        return blocked("layer " + std::to_string(p.layer) + " has two past " +
                       (p.is_value ? "values" : "keys") + " ('" +
                       g.values[static_cast<size_t>(slot->input)].name + "', '" + name + "')");
      slot = &p;
    }
    for (int64_t l = 0; l < layers; ++l)
      if (!layer_past[static_cast<size_t>(l)][0] || !layer_past[static_cast<size_t>(l)][1])
        return blocked("layer " + std::to_string(l) + " has no past key or value input");
  }
  const bool with_past = keep_past && !pasts.empty();
  d.past_kept = with_past;

  const ir::Node* head = d.lm_head ? lins.back() : nullptr;
  Tensor head_w;  // [V, E] when untied
  if (head) {
    if (linear_k(g, *head) != e || linear_n(g, *head) != d.vocab || head->inputs.size() > 2)
      return blocked("the last linear layer is not an LM head " + std::to_string(e) + "x" +
                     std::to_string(d.vocab) + " without bias");
    const Tensor& w = constant_of(g, *head, 1);
    bool trans = head->attr_int("transB", 0) != 0;
    bool same = trans && w.raw() == wte.raw();
    if (!same && trans)
      same = std::memcmp(w.raw(), wte.raw(), static_cast<size_t>(wte.numel()) * 4) == 0;
    if (!same && !trans) {
      same = true;
      for (int64_t v = 0; v < d.vocab && same; ++v)
        for (int64_t k = 0; k < e && same; ++k)
          same = w.data<float>()[k * d.vocab + v] == wte.data<float>()[v * e + k];
    }
    d.tied_head = same;
    if (!same) {
      Tensor kn = weight_kn(g, *head);  // [E, V] -> [V, E]
      head_w = Tensor::uninitialized(DType::kFloat32, {d.vocab, e});
      for (int64_t k = 0; k < e; ++k)
        for (int64_t v = 0; v < d.vocab; ++v)
          head_w.data_mut<float>()[v * e + k] = kn.data<float>()[k * d.vocab + v];
    }
  }

  // Heads: the [.., H, D] reshape that splits them; activation: the ops the MLP uses.
  std::map<int64_t, int> votes;
  for (const ir::Node& n : g.nodes) {
    if (!n.domain.empty() || n.op_type != "Reshape" || n.outputs[0] < 0) continue;
    const ir::SymShape& os = g.values[static_cast<size_t>(n.outputs[0])].shape;
    auto sv = ir::symbolic_ints(g.input(n, 1));
    std::vector<ir::Dim> dims = os.rank_known ? os.dims : (sv ? *sv : std::vector<ir::Dim>{});
    if (dims.size() != 4 || !dims[3].is_known() || dims[3].value <= 1 || e % dims[3].value != 0)
      continue;
    if (dims[2].is_known() && dims[2].value * dims[3].value != e) continue;
    if (e / dims[3].value > 1) ++votes[e / dims[3].value];
  }
  d.heads = votes.empty() ? (e % 64 == 0 ? e / 64 : 0)
                          : std::max_element(votes.begin(), votes.end(), [](auto& x, auto& y) {
                              return x.second < y.second;
                            })->first;
  if (d.heads <= 0) return blocked("could not find the number of attention heads");
  d.head_size = e / d.heads;
  for (const ir::Node& n : g.nodes) {
    if (!n.domain.empty()) continue;
    if (n.op_type == "Erf") d.activation = "gelu_erf";
    if (n.op_type == "Gelu")
      d.activation = n.attr_string("approximate", "none") == "tanh" ? "gelu_tanh" : "gelu_erf";
    if (n.op_type == "Tanh" && d.activation.empty()) d.activation = "gelu_tanh";
  }
  if (d.activation.empty())
    return blocked("the MLP activation is neither GELU form (no Tanh, Erf or Gelu op)");
  d.epsilon = lns[0]->attr_float("epsilon", 1e-5f);

  // The canonical graph.
  Builder c;
  c.g.opset = g.opset;
  c.g.ir_version = g.ir_version;
  c.g.producer = g.producer;
  c.g.producer_version = g.producer_version;
  c.g.source = g.source;
  std::map<int, int> input_map;
  for (int id : g.inputs) {
    if (!with_past && is_past_or_flag(id)) continue;
    ir::Value v = g.values[static_cast<size_t>(id)];
    v.sym_value.reset();
    int nid = c.g.add_value(std::move(v));
    c.g.inputs.push_back(nid);
    input_map[id] = nid;
  }
  auto vec = [&](const ir::Node& n, size_t i) { return constant_of(g, n, i); };
  int wte_id = c.constant("wte.weight", wte);
  int wpe_id = c.constant("wpe.weight", wpe);
  // The pasts each layer reads (through their gates in a merged decoder): [layer][key, value].
  std::vector<std::array<int, 2>> past_in(static_cast<size_t>(layers), {-1, -1});
  if (with_past) {
    for (int64_t l = 0; l < layers; ++l)
      for (int kv = 0; kv < 2; ++kv) {
        const PastIO& p = *layer_past[static_cast<size_t>(l)][static_cast<size_t>(kv)];
        int id = input_map[p.input];
        if (p.gated >= 0)
          id = c.node("h." + std::to_string(l) + (kv ? ".past_value" : ".past_key") + ".gate",
                      "CacheGate", true, {id, input_map[g.find(d.cache_flag)]}, {},
                      g.values[static_cast<size_t>(p.input)].name + ".gated");
        past_in[static_cast<size_t>(l)][static_cast<size_t>(kv)] = id;
      }
  }
  int hidden = c.node("embed", "Embedding", true,
                      {input_map[ids], pos_input ? input_map[pos] : -1, wte_id, wpe_id,
                       with_past && !pos_input ? past_in[0][0] : -1},
                      {}, "embed.out");
  auto layer_norm = [&](const std::string& p, const ir::Node& ln, int x, const std::string& out) {
    int s = c.constant(p + ".weight", vec(ln, 1));
    int b = c.constant(p + ".bias", vec(ln, 2));
    return c.node(
        p, "LayerNormalization", false, {x, s, b},
        {{"axis", int_attr(-1)}, {"epsilon", float_attr(ln.attr_float("epsilon", 1e-5f))}}, out);
  };
  auto linear = [&](const std::string& p, const ir::Node& lin, int x, int residual,
                    const std::string& act) {
    int w = c.constant(p + ".weight", weight_kn(g, lin));
    int b = c.constant(p + ".bias", vec(lin, 2));
    std::map<std::string, ir::Attribute> attrs{{"transB", int_attr(0)}};
    if (!act.empty()) attrs["activation"] = string_attr(act);
    return c.node(p, "Linear", true, {x, w, b, residual}, attrs, p + ".out");
  };
  for (int64_t l = 0; l < layers; ++l) {
    std::string p = "h." + std::to_string(l);
    size_t a = static_cast<size_t>(4 * l);
    int x = layer_norm(p + ".ln_1", *lns[2 * l], hidden, p + ".ln_1.out");
    int qkv = linear(p + ".attn.c_attn", *lins[a], x, -1, "");
    std::map<std::string, ir::Attribute> attn{
        {"num_heads", int_attr(d.heads)},
        {"scale", float_attr(static_cast<float>(1.0 / std::sqrt(double(d.head_size))))},
        {"layer", int_attr(l)}};
    int ctx = -1;
    if (with_past) {
      const auto& lp = layer_past[static_cast<size_t>(l)];
      std::vector<int> outs =
          c.nodes(p + ".attn", "Attention", true,
                  {qkv, mask >= 0 ? input_map[mask] : -1, past_in[static_cast<size_t>(l)][0],
                   past_in[static_cast<size_t>(l)][1]},
                  attn,
                  {p + ".attn.out", g.values[static_cast<size_t>(lp[0]->present)].name,
                   g.values[static_cast<size_t>(lp[1]->present)].name});
      ctx = outs[0];
    } else {
      ctx = c.node(p + ".attn", "Attention", true, {qkv, mask >= 0 ? input_map[mask] : -1}, attn,
                   p + ".attn.out");
    }
    int h1 = linear(p + ".attn.c_proj", *lins[a + 1], ctx, hidden, "");
    x = layer_norm(p + ".ln_2", *lns[2 * l + 1], h1, p + ".ln_2.out");
    int fc = linear(p + ".mlp.c_fc", *lins[a + 2], x, -1, d.activation);
    hidden = linear(p + ".mlp.c_proj", *lins[a + 3], fc, h1, "");
  }
  const std::string out_name = g.values[static_cast<size_t>(g.outputs[0])].name;
  int final_hidden = layer_norm("ln_f", *lns.back(), hidden, head ? "ln_f.out" : "ln_f.tmp");
  int out = final_hidden;
  if (head) {
    int w = d.tied_head ? wte_id : c.constant("lm_head.weight", head_w);
    out = c.node("lm_head", "Linear", true, {final_hidden, w}, {{"transB", int_attr(1)}},
                 "lm_head.out");
  }
  c.g.values[static_cast<size_t>(out)].name = out_name;
  c.g.outputs = {out};
  if (with_past)
    for (size_t k = 1; k < g.outputs.size(); ++k)
      c.g.outputs.push_back(c.g.find(g.values[static_cast<size_t>(g.outputs[k])].name));
  c.g.reindex();
  // Drop the omitted optional inputs (-1) at the end of each node's input list.
  for (ir::Node& n : c.g.nodes)
    while (!n.inputs.empty() && n.inputs.back() < 0) n.inputs.pop_back();

  // Check it on random inputs, on the reference kernels.
  int64_t b = 2, s = std::min<int64_t>(3, d.n_positions);
  const ir::Value& in0 = g.values[static_cast<size_t>(ids)];
  if (in0.shape.rank_known && in0.shape.dims.size() == 2) {
    if (in0.shape.dims[0].is_known()) b = in0.shape.dims[0].value;
    if (in0.shape.dims[1].is_known()) s = in0.shape.dims[1].value;
  }
  auto measure = [&]() -> double {
    if (!pasts.empty()) {
      // Whole outputs (logits and presents) on a padded batch: with a past of 2 (and, for a
      // merged decoder, with the cache off and a dummy past of 1), or without a past when the
      // fused graph drops it: then the fused graph is the first step, a merged decoder's
      // no-cache branch (exports traced for one new token per cached step compute only that
      // branch for any length).
      const ir::Graph& ref = original ? *original : g;
      std::vector<std::pair<int64_t, bool>> cases{
          {with_past ? 2 : 0, with_past || d.cache_flag.empty()}};
      if (with_past && !d.cache_flag.empty()) cases.push_back({1, false});
      double diff = 0;
      for (const auto& [past, flag] : cases) {
        std::vector<char> valid;
        auto inputs = past_check_inputs(ref, d, b, s, past, flag, &valid);
        double one = compare_graphs(ref, c.g, inputs, valid);
        if (one < 0) return -1;
        diff = std::max(diff, one);
      }
      return diff;
    }
    // Hidden states before the head on a padded batch (row 1 left-padded: causal and padding
    // masks both matter), then the logits of one token (the head is a plain Linear whose weight
    // was compared above).
    std::vector<char> valid;
    auto inputs = check_inputs(g, d, b, s, &valid);
    int orig_hidden = head ? head->inputs[0] : g.outputs[0];
    double diff =
        compare_rows(run_to(g, orig_hidden, inputs), run_to(c.g, final_hidden, inputs), valid);
    if (head && diff >= 0 && diff <= 1e-4) {
      int64_t b2 = 1, s2 = 1;
      if (in0.shape.dims.size() == 2 && in0.shape.dims[0].is_known()) b2 = b;
      if (in0.shape.dims.size() == 2 && in0.shape.dims[1].is_known()) s2 = s;
      inputs = check_inputs(g, d, b2, s2, &valid);
      diff = std::max(
          diff, compare_rows(run_to(g, g.outputs[0], inputs), run_to(c.g, out, inputs), valid));
    }
    return diff;
  };
  double diff = 0;
  try {
    diff = measure();
  } catch (const Error& err) {
    return blocked(std::string("checking the fused graph failed: ") + err.what());
  }
  if (diff < 0)
    return blocked("the fused graph's outputs differ in size from the original graph's");
  if (!(diff <= 1e-4)) {
    std::ostringstream os;
    d.recognised = true;
    os << "the fused graph disagrees with the original graph on random inputs (max relative "
          "difference "
       << diff << "; found " << d.summary() << ")";
    return blocked(os.str());
  }
  d.verified_max_diff = diff;
  d.recognised = true;
  g = std::move(c.g);
  return d;
}

}  // namespace gptrt::passes
