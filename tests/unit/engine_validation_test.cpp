// Engine files are validated, not trusted (issue 25): a plan edited behind a valid checksum is
// refused at load, naming the node or value and the field, before any kernel runs. Each case is
// one edit an attacker made to a real engine (cpu and reference backends).
#include <fstream>
#include <functional>

#include "platform/platform.h"
#include "runtime/engine_impl.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

using Edit = std::function<void(Engine::Impl&)>;

std::string engine_for(Backend backend, const std::string& dir) {
  BuildConfig c;
  c.backend = backend;
  c.default_max_batch = 4;
  std::string path = dir + "/" + backend_name(backend) + ".engine";
  Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), c)->save(path);
  return path;
}

ir::Node& node_of(Engine::Impl& e, const std::string& op, int nth = 0) {
  for (ir::Node& n : e.graph.nodes)
    if (n.op_type == op && nth-- == 0) return n;
  throw Error(ErrorCode::kInternal, "the plan has no " + op);
}

int value_of(Engine::Impl& e, const std::string& name) {
  int id = e.graph.find(name);
  if (id < 0) throw Error(ErrorCode::kInternal, "the plan has no value " + name);
  return id;
}

// Writes `good` edited by `edit` (with a fresh checksum) and expects loading it to fail with a
// parse error whose message has every part.
void expect_refused(const std::string& good, const Edit& edit,
                    std::initializer_list<std::string> parts) {
  auto e = read_engine_file(platform::MappedFile::open(good));
  edit(*e);
  std::vector<uint8_t> bytes = write_engine_file(*e);
  std::string path = good + ".edited";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
  try {
    Engine::load(path);
    ADD_FAILURE() << "an edited engine loaded; expected a refusal naming: " << *parts.begin();
  } catch (const Error& err) {
    std::string msg = err.what();
    EXPECT_EQ(err.code(), ErrorCode::kParseError) << msg;
    EXPECT_NE(msg.find("invalid plan"), std::string::npos) << msg;
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  }
}

// An INT8-weight engine's linear layers carry their scales (input 4), and only int8 weights do.
TEST(EngineValidation, Int8WeightsWithoutTheirScalesAreRefused) {
  std::string dir = temp_dir("engine_validation_int8");
  BuildConfig c;
  c.backend = Backend::kCpu;
  c.precision = Precision::kInt8;
  c.default_max_batch = 4;
  std::string path = dir + "/int8.engine";
  Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), c)->save(path);
  EXPECT_NO_THROW(Engine::load(path));
  expect_refused(path, [](Engine::Impl& e) { node_of(e, "PackedLinear").inputs.resize(4); },
                 {"PackedLinear", "int8 weights need their scales (input 4)"});
  expect_refused(path,
                 [](Engine::Impl& e) {
                   ir::Node& n = node_of(e, "PackedLinear");
                   n.inputs[4] = n.inputs[1];  // the int8 weights in the scales' place
                 },
                 {"PackedLinear", "scales"});
  // In groups along K: scales [panels, K / group, 16], the group a multiple of 16 dividing K.
  c.int8_group = 16;
  const std::string grouped = dir + "/int8_groups.engine";
  Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), c)->save(grouped);
  EXPECT_NO_THROW(Engine::load(grouped));
  expect_refused(grouped,
                 [](Engine::Impl& e) {
                   ir::Node& n = node_of(e, "PackedLinear");
                   const Tensor& s = e.graph.values[static_cast<size_t>(n.inputs[4])].constant;
                   n.inputs[4] = e.graph.add_constant(
                       "bad.scales", Tensor(DType::kFloat32, {s.dim(0), 3, s.dim(2)}));
                 },
                 {"PackedLinear", "scales 'bad.scales'"});
  std::string fp32 = engine_for(Backend::kCpu, dir);
  expect_refused(fp32,
                 [](Engine::Impl& e) {
                   ir::Node& n = node_of(e, "PackedLinear");
                   n.inputs.resize(4, -1);
                   n.inputs.push_back(n.inputs[2]);
                 },
                 {"PackedLinear", "only int8 weights take scales"});
}

TEST(EngineValidation, AnUneditedPlanLoadsAndEveryEditedPlanIsRefusedByName) {
  std::string dir = temp_dir("engine_validation");
  std::string cpu = engine_for(Backend::kCpu, dir);
  // Re-encoded without an edit, the engine still loads and runs.
  expect_refused(cpu, [](Engine::Impl& e) { node_of(e, "Attention").attrs["num_heads"].i = 0; },
                 {"Attention", "'num_heads' is 0"});
  {
    auto e = read_engine_file(platform::MappedFile::open(cpu));
    std::vector<uint8_t> bytes = write_engine_file(*e);
    std::ofstream(dir + "/same.engine", std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    EXPECT_NO_THROW(Engine::load(dir + "/same.engine"));
  }

  // From the CLI: exit 1, the node and field named, nothing run.
  CliResult cli = run_cli("run --loadEngine=" + cpu + ".edited");
  EXPECT_EQ(cli.exit_code, 1) << cli.output;
  EXPECT_NE(cli.output.find("holds an invalid plan"), std::string::npos) << cli.output;
  EXPECT_NE(cli.output.find("'num_heads' is 0"), std::string::npos) << cli.output;

  // Input and output counts.
  expect_refused(cpu, [](Engine::Impl& e) { node_of(e, "Attention").inputs.clear(); },
                 {"Attention", "has 0 inputs", "takes 1 to 4"});
  expect_refused(cpu, [](Engine::Impl& e) { node_of(e, "Embedding").inputs.pop_back(); },
                 {"Embedding", "has 3 inputs", "takes 4 to 5"});
  expect_refused(cpu,
                 [](Engine::Impl& e) {
                   ir::Value extra;
                   extra.name = "extra";
                   int id = e.graph.add_value(extra);
                   node_of(e, "Attention").outputs.push_back(id);
                 },
                 {"Attention", "(outputs 1, 2) together, or none of them"});
  expect_refused(cpu, [](Engine::Impl& e) { node_of(e, "PackedLinear").inputs.resize(1); },
                 {"PackedLinear", "has 1 inputs"});
  // Attributes against the weights the kernels read.
  expect_refused(cpu, [](Engine::Impl& e) { node_of(e, "Attention").attrs["num_heads"].i = 5; },
                 {"Attention", "multiple of 3 * num_heads = 15"});
  expect_refused(cpu, [](Engine::Impl& e) { e.graph.nodes.back().attrs["N"].i = 100000; },
                 {"lm_head", "PackedLinear", "N = 100000"});
  expect_refused(cpu, [](Engine::Impl& e) { e.graph.nodes.back().attrs["N"].i = 1016; },
                 {"PackedLinear", "N = 1016"});
  expect_refused(cpu, [](Engine::Impl& e) { node_of(e, "PackedLinear").attrs["K"].i = 65; },
                 {"PackedLinear", "K = 65"});
  expect_refused(cpu, [](Engine::Impl& e) { node_of(e, "PackedLinear").attrs["activation"].i = 7; },
                 {"PackedLinear", "'activation' is 7"});
  expect_refused(cpu, [](Engine::Impl& e) { node_of(e, "LayerNorm").attrs["epsilon"].f = -1e9f; },
                 {"LayerNorm", "epsilon"});
  expect_refused(cpu, [](Engine::Impl& e) { node_of(e, "Embedding").attrs["vocab"].i = 1000000; },
                 {"Embedding", "packed token table", "vocab 1000000"});
  // Index limits and profiles.
  expect_refused(cpu, [](Engine::Impl& e) { e.info.index_limits["input_ids"] = 0; },
                 {"index limit of 'input_ids' is 0"});
  expect_refused(cpu, [](Engine::Impl& e) { e.info.index_limits["input_ids"] = 1000000; },
                 {"index limit of 'input_ids' is 1000000", "Embedding", "1000 rows"});
  expect_refused(cpu, [](Engine::Impl& e) { e.info.index_limits["nothing"] = 3; },
                 {"'nothing', which is no input"});
  expect_refused(cpu,
                 [](Engine::Impl& e) {
                   ShapeRange& r = e.info.profiles[0].inputs[0].second;
                   r.min = {1};
                   r.opt = {1};
                   r.max = {8};
                 },
                 {"input 'input_ids' has rank 2", "profile gives"});
  expect_refused(cpu,
                 [](Engine::Impl& e) {
                   e.info.profiles[0].inputs[0].second.max = {1, 1};
                 },
                 {"input_ids", "0 <= min <= opt <= max"});
  expect_refused(cpu, [](Engine::Impl& e) { e.info.profiles.clear(); },
                 {"no optimization profile"});
  expect_refused(cpu,
                 [](Engine::Impl& e) {
                   ShapeRange& r = e.info.profiles[0].inputs[0].second;
                   r.max = {int64_t{1} << 40, int64_t{1} << 40};
                 },
                 {"input 'input_ids' at its max shape", "too large"});
  // Values: constants as declared, inputs once, outputs as inferred.
  expect_refused(cpu,
                 [](Engine::Impl& e) {
                   ir::Value& v =
                       e.graph.values[static_cast<size_t>(node_of(e, "Embedding").inputs[3])];
                   v.shape.dims[0] = ir::Dim::known(1000000);
                 },
                 {"constant", "is declared float32 [1000000, 64] but holds float32 [64, 64]"});
  expect_refused(cpu, [](Engine::Impl& e) { e.graph.inputs.push_back(e.graph.inputs[0]); },
                 {"input 'input_ids' is listed twice"});
  expect_refused(cpu,
                 [](Engine::Impl& e) {
                   e.graph.values[static_cast<size_t>(node_of(e, "Attention").outputs[0])].dtype =
                       DType::kInt64;
                 },
                 {"Attention", "is stored as int64", "its inputs make it float32"});
  expect_refused(cpu,
                 [](Engine::Impl& e) {
                   int out = node_of(e, "Embedding").outputs[0];
                   e.graph.values[static_cast<size_t>(out)].shape.dims[2] = ir::Dim::known(65);
                 },
                 {"Embedding", "is stored as float32", "65"});

  // The reference backend's plan is the ONNX graph: its ops are checked by their schemas.
  std::string ref = engine_for(Backend::kReference, dir);
  expect_refused(ref,
                 [](Engine::Impl& e) {
                   ir::Node& n = node_of(e, "LayerNormalization");
                   Shape shape = e.graph.values[static_cast<size_t>(n.inputs[1])].constant.shape();
                   n.inputs[1] = e.graph.add_constant("scale.fp16", Tensor(DType::kFloat16, shape));
                 },
                 {"LayerNormalization", "scale 'scale.fp16' is float16, expected float32"});
  expect_refused(
      ref, [](Engine::Impl& e) { node_of(e, "Gather").inputs.push_back(value_of(e, "input_ids")); },
      {"Gather", "has 3 inputs", "takes 2"});
  expect_refused(ref,
                 [](Engine::Impl& e) {
                   node_of(e, "MatMul").inputs[1] =
                       e.graph.add_constant("w65", Tensor(DType::kFloat32, {65, 4}));
                 },
                 {"MatMul", "inner dimensions differ"});
  expect_refused(
      ref, [](Engine::Impl& e) { node_of(e, "LayerNormalization").attrs["epsilon"].f = -1.f; },
      {"LayerNormalization", "'epsilon'"});
}

}  // namespace
}  // namespace gptrt::test
