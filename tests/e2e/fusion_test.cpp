// The fusion passes: every export form of the fixture and its Hugging Face folder become the
// same canonical fused graph (same nodes, same weights); a graph that computes something else
// is refused by the numerical check and runs op by op; `gptrt inspect --fused` shows it.
#include <cstring>

#include "builder/builder.h"
#include "hf/make_model.h"
#include "ir/describe.h"
#include "ir/shape_inference.h"
#include "passes/passes.h"
#include "runtime/engine_impl.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

struct Fused {
  passes::DecoderInfo decoder;
  ir::Graph graph;
};

Fused fuse_network(const Network& net) {
  Fused f;
  f.graph = net.impl->graph;
  passes::fold_constants(f.graph);
  passes::eliminate_dead_code(f.graph);
  f.decoder = builder::fuse(f.graph, nullptr);
  return f;
}

void expect_same_graph(const ir::Graph& a, const ir::Graph& b, const std::string& what) {
  ASSERT_EQ(a.nodes.size(), b.nodes.size()) << what;
  for (size_t i = 0; i < a.nodes.size(); ++i)
    EXPECT_EQ(ir::describe_node(a, a.nodes[i]), ir::describe_node(b, b.nodes[i])) << what;
  for (const ir::Value& v : a.values) {
    if (!v.is_constant()) continue;
    int id = b.find(v.name);
    ASSERT_GE(id, 0) << what << ": " << v.name;
    const Tensor& w = b.values[static_cast<size_t>(id)].constant;
    ASSERT_EQ(v.constant.shape(), w.shape()) << what << ": " << v.name;
    EXPECT_EQ(std::memcmp(v.constant.raw(), w.raw(), v.constant.nbytes()), 0)
        << what << ": weight " << v.name << " differs";
  }
}

TEST(Fusion, EveryExportAndTheHfFolderGiveTheSameFusedGraph) {
  Fused ref = fuse_network(Network::from_hf(data_path("gpt2-tiny/hf")));
  ASSERT_TRUE(ref.decoder.recognised) << ref.decoder.blocker;
  const passes::DecoderInfo& d = ref.decoder;
  EXPECT_EQ(d.layers, 2);
  EXPECT_EQ(d.heads, 4);
  EXPECT_EQ(d.head_size, 16);
  EXPECT_EQ(d.hidden, 64);
  EXPECT_EQ(d.inner, 256);
  EXPECT_EQ(d.vocab, 1000);
  EXPECT_EQ(d.n_positions, 64);
  EXPECT_FLOAT_EQ(d.epsilon, 1e-5f);
  EXPECT_EQ(d.activation, "gelu_tanh");
  EXPECT_TRUE(d.lm_head && d.tied_head);
  EXPECT_EQ(d.attention_mask, "attention_mask");
  std::map<std::string, int64_t> ops;
  for (const ir::Node& n : ref.graph.nodes) ++ops[n.op_type];
  EXPECT_EQ(ops["Embedding"], 1);
  EXPECT_EQ(ops["LayerNormalization"], 5);
  EXPECT_EQ(ops["Linear"], 9);
  EXPECT_EQ(ops["Attention"], 2);
  EXPECT_EQ(ref.graph.nodes.size(), 17u);
  for (const char* file :
       {"gpt2-tiny/legacy-opset13.onnx", "gpt2-tiny/legacy-opset17.onnx",
        "gpt2-tiny/variants/dynamo-opset18.onnx", "gpt2-tiny/external/legacy-opset13.onnx"}) {
    Fused f = fuse_network(Network::from_onnx(data_path(file)));
    ASSERT_TRUE(f.decoder.recognised) << file << ": " << f.decoder.blocker;
    expect_same_graph(ref.graph, f.graph, file);
  }
}

// The fusions a backend may make at run time are marked in the plan (so engine files and
// `inspect --fused` show them): every QKV projection, FC1 and the LM head read a LayerNorm that
// only linear layers read; each QKV projection feeds its attention alone.
TEST(Fusion, PrologueLayerNormsAndAttentionProjectionsAreMarked) {
  Fused f = fuse_network(Network::from_hf(data_path("gpt2-tiny/hf")));
  ASSERT_TRUE(f.decoder.recognised) << f.decoder.blocker;
  int prologues = 0, projections = 0;
  for (size_t i = 0; i < f.graph.nodes.size(); ++i) {
    const ir::Node& n = f.graph.nodes[i];
    if (n.attr_int("layer_norm_prologue", 0) == 1) {
      ++prologues;
      ASSERT_EQ(n.op_type, "Linear");
    }
    if (n.attr_int("attention_follows", 0) == 1) {
      ++projections;
      ASSERT_LT(i + 1, f.graph.nodes.size());
      EXPECT_EQ(f.graph.nodes[i + 1].op_type, "Attention");
      EXPECT_EQ(n.attr_int("layer_norm_prologue", 0), 1) << "a QKV projection reads ln_1";
    }
  }
  EXPECT_EQ(prologues, 5);  // 2 layers x (QKV, FC1) + the LM head
  EXPECT_EQ(projections, 2);
  FusedGraph shown = Network::from_hf(data_path("gpt2-tiny/hf")).fused();
  int shown_marks = 0;
  for (const std::string& line : shown.nodes)
    shown_marks += line.find("attention_follows=1") != std::string::npos;
  EXPECT_EQ(shown_marks, 2) << "inspect --fused shows the marks";
}

TEST(Fusion, OtherExportFormsAreRecognisedWithTheirOwnInputsAndActivation) {
  Fused gelu = fuse_network(Network::from_onnx(data_path("gpt2-tiny/variants/gelu-opset20.onnx")));
  ASSERT_TRUE(gelu.decoder.recognised) << gelu.decoder.blocker;
  EXPECT_EQ(gelu.decoder.activation, "gelu_erf");
  Fused base = fuse_network(Network::from_onnx(data_path("gpt2-tiny/variants/base-opset17.onnx")));
  ASSERT_TRUE(base.decoder.recognised) << base.decoder.blocker;
  EXPECT_FALSE(base.decoder.lm_head);
  Fused pos = fuse_network(
      Network::from_onnx(data_path("gpt2-tiny/variants/legacy-opset14-int32-posids.onnx")));
  ASSERT_TRUE(pos.decoder.recognised) << pos.decoder.blocker;
  EXPECT_EQ(pos.decoder.position_ids, "position_ids");
}

TEST(Fusion, AGraphThatComputesSomethingElseIsRefusedAndStillRuns) {
  // Scale the attention scores differently (the Mul by 1/sqrt(head size) = 0.25): the
  // structure still looks like GPT-2, the numbers do not.
  Network net = Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx"));
  auto impl = std::make_shared<Network::Impl>(*net.impl);
  passes::fold_constants(impl->graph);  // the scale is a constant once folded
  passes::eliminate_dead_code(impl->graph);
  int changed = 0;
  for (ir::Node& n : impl->graph.nodes) {
    if (n.op_type != "Mul" || n.inputs.size() != 2) continue;
    ir::Value& c = impl->graph.values[static_cast<size_t>(n.inputs[1])];
    if (c.is_constant() && c.constant.dtype() == DType::kFloat32 && c.constant.numel() == 1 &&
        c.constant.data<float>()[0] == 0.25f) {
      Tensor t(DType::kFloat32, c.constant.shape());
      t.data_mut<float>()[0] = 0.3f;
      c.constant = t;
      ++changed;
    }
  }
  ASSERT_EQ(changed, 2);  // one per layer
  Network doctored;
  doctored.impl = impl;
  Fused f = fuse_network(doctored);
  EXPECT_FALSE(f.decoder.recognised);
  EXPECT_NE(f.decoder.blocker.find("disagrees with the original graph"), std::string::npos)
      << f.decoder.blocker;
  // The engine still builds (fused LayerNorms and linear layers, the rest op by op) and says why.
  BuildConfig config;
  config.backend = Backend::kCpu;
  std::vector<std::string> notices;
  config.notice = [&](const std::string& s) { notices.push_back(s); };
  auto engine = Engine::build(doctored, config);
  bool said = false;
  for (const std::string& s : notices) said = said || s.find("not recognised") != std::string::npos;
  EXPECT_TRUE(said);
  auto ctx = engine->create_execution_context(2);
  TensorMap in;
  Tensor ids(DType::kInt64, {1, 3}), mask(DType::kInt64, {1, 3});
  for (int i = 0; i < 3; ++i) {
    ids.data_mut<int64_t>()[i] = 7 * i + 1;
    mask.data_mut<int64_t>()[i] = 1;
  }
  in["input_ids"] = ids;
  in["attention_mask"] = mask;
  EXPECT_EQ(ctx->execute(in).at(0).shape(), (Shape{1, 3, 1000}));
}

// A vocabulary smaller than the position table (a byte-level model, say): the token lookup is
// the one indexed by input_ids, not the larger table (the fusion's numerical check then passes).
TEST(Fusion, APositionTableLargerThanTheVocabularyIsStillThePositions) {
  hf::Gpt2Config cfg;
  cfg.n_layer = 1;
  cfg.n_embd = 32;
  cfg.n_head = 2;
  cfg.vocab_size = 40;
  cfg.n_positions = 96;
  const std::string dir = temp_dir("fusion_small_vocabulary");
  hf::make_model(cfg, 3, dir);
  Fused f = fuse_network(Network::from_hf(dir));
  ASSERT_TRUE(f.decoder.recognised) << f.decoder.blocker;
  EXPECT_EQ(f.decoder.vocab, 40);
  EXPECT_EQ(f.decoder.n_positions, 96);
}

TEST(Fusion, SingleOpModelIsNotADecoder) {
  Fused f = fuse_network(Network::from_onnx(data_path("ops/add_broadcast/model.onnx")));
  EXPECT_FALSE(f.decoder.recognised);
  EXPECT_NE(f.decoder.blocker.find("embedding lookups"), std::string::npos) << f.decoder.blocker;
}

TEST(Fusion, InspectFusedPrintsTheFusedGraph) {
  CliResult r = run_cli("inspect --fused --onnx " + data_path("gpt2-tiny/legacy-opset13.onnx"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* s :
       {"GPT-2 decoder: 2 layers, 4 heads x 16, hidden 64, MLP 256 (gelu_tanh)",
        "gptrt.Attention(h.0.attn.c_attn.out, attention_mask) layer=0 num_heads=4 scale=0.25",
        "activation=gelu_tanh",
        "logits [batch_size, seq_len, 1000] = gptrt.Linear(ln_f.out, "
        "wte.weight<1000x64>) layer_norm_prologue=1 transB=1",
        "attention_follows=1", "fused graph (17 nodes)"}) {
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
  }
  r = run_cli("inspect --fused --onnx " + data_path("ops/add_broadcast/model.onnx"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("GPT-2 decoder not recognised: expected two embedding lookups"),
            std::string::npos)
      << r.output;
  r = run_cli("inspect --fused");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("give --onnx=MODEL.onnx or --hf=DIR"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace gptrt::test
