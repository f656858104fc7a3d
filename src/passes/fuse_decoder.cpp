// Recognises a GPT-2 decoder from its weights' places in the graph (two embedding lookups,
// 2L+1 LayerNorms, 4L linear layers and an optional LM head, in that order), builds the
// canonical fused graph from them, and keeps it only if it computes what the original graph
// computes on random inputs with padded rows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <sstream>

#include "backends/reference/fused_ops.h"
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
  int node(const std::string& name, const std::string& op, bool fused, std::vector<int> inputs,
           std::map<std::string, ir::Attribute> attrs, const std::string& out) {
    ir::Value v;
    v.name = out;
    int id = g.add_value(std::move(v));
    ir::Node n;
    n.name = name;
    n.op_type = op;
    if (fused) n.domain = kFusedDomain;
    n.inputs = std::move(inputs);
    n.outputs = {id};
    n.attrs = std::move(attrs);
    g.nodes.push_back(std::move(n));
    ir::infer_node(g, g.nodes.back());
    return id;
  }
};

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
      switch (v.dtype) {
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
     << (position_ids.empty() ? "" : ", " + position_ids) << "; matches the original graph to "
     << verified_max_diff;
  return os.str();
}

DecoderInfo fuse_decoder(ir::Graph& g) {
  DecoderInfo d;
  auto blocked = [&](const std::string& why) {
    d.blocker = why;
    d.recognised = false;
    return d;
  };
  if (g.outputs.size() != 1)
    return blocked("the graph has " + std::to_string(g.outputs.size()) +
                   " outputs, a GPT-2 forward has one");
  Uses uses(g);

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
    if (id == ids || (pos_input && id == pos) || uses.consumers[static_cast<size_t>(id)].empty())
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
    ir::Value v = g.values[static_cast<size_t>(id)];
    v.sym_value.reset();
    int nid = c.g.add_value(std::move(v));
    c.g.inputs.push_back(nid);
    input_map[id] = nid;
  }
  auto vec = [&](const ir::Node& n, size_t i) { return constant_of(g, n, i); };
  int wte_id = c.constant("wte.weight", wte);
  int wpe_id = c.constant("wpe.weight", wpe);
  int hidden =
      c.node("embed", "Embedding", true,
             {input_map[ids], pos_input ? input_map[pos] : -1, wte_id, wpe_id}, {}, "embed.out");
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
    int ctx = c.node(p + ".attn", "Attention", true, {qkv, mask >= 0 ? input_map[mask] : -1}, attn,
                     p + ".attn.out");
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
  c.g.reindex();
  // Drop the omitted optional inputs (-1) at the end of each node's input list.
  for (ir::Node& n : c.g.nodes)
    while (!n.inputs.empty() && n.inputs.back() < 0) n.inputs.pop_back();

  // Check it: hidden states before the head on a padded batch (row 1 left-padded: causal and
  // padding masks both matter), then the logits of one token (the head is a plain Linear whose
  // weight was compared above).
  int64_t b = 2, s = std::min<int64_t>(3, d.n_positions);
  const ir::Value& in0 = g.values[static_cast<size_t>(ids)];
  if (in0.shape.rank_known && in0.shape.dims.size() == 2) {
    if (in0.shape.dims[0].is_known()) b = in0.shape.dims[0].value;
    if (in0.shape.dims[1].is_known()) s = in0.shape.dims[1].value;
  }
  try {
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
    if (diff < 0) return blocked("the fused graph's output size differs from the original graph's");
    if (!(diff <= 1e-4)) {
      std::ostringstream os;
      d.recognised = true;
      os << "the fused graph disagrees with the original graph on random inputs (max relative "
            "difference "
         << diff << "; found " << d.summary() << ")";
      return blocked(os.str());
    }
    d.verified_max_diff = diff;
  } catch (const Error& err) {
    return blocked(std::string("checking the fused graph failed: ") + err.what());
  }
  d.recognised = true;
  g = std::move(c.g);
  return d;
}

}  // namespace gptrt::passes
