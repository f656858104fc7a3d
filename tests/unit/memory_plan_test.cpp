// The activation arena's plan: values alive at the same time never share bytes, every planned
// value fits its largest shape, and a context runs the goldens out of its arena.
#include "ir/memory_plan.h"
#include "builder/builder.h"
#include "passes/passes.h"
#include "runtime/engine_impl.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

TEST(MemoryPlan, LiveValuesNeverShareBytesAndEachFitsItsLargestShape) {
  Network net = Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx"));
  ir::Graph g = net.impl->graph;
  passes::fold_constants(g);
  passes::eliminate_dead_code(g);
  ASSERT_TRUE(builder::fuse(g, nullptr).recognised);
  std::map<std::string, int64_t> dim_max{{"batch_size", 16}, {"seq_len", 12}};
  auto all = [](const ir::Node&) { return true; };
  ir::MemoryPlan plan = ir::plan_memory(g, dim_max, all);
  ASSERT_GT(plan.total, 0);
  std::vector<int> def(g.values.size(), -1), last(g.values.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (int id : g.nodes[i].inputs)
      if (id >= 0) last[static_cast<size_t>(id)] = static_cast<int>(i);
    for (int id : g.nodes[i].outputs) def[static_cast<size_t>(id)] = static_cast<int>(i);
  }
  int planned = 0;
  int64_t sum = 0;
  for (size_t a = 0; a < g.values.size(); ++a) {
    if (plan.offset[a] < 0) continue;
    ++planned;
    const ir::Value& v = g.values[a];
    int64_t need = 4;
    for (const ir::Dim& d : v.shape.dims) need *= d.is_known() ? d.value : dim_max.at(d.symbol);
    EXPECT_GE(plan.capacity[a], need) << v.name;
    EXPECT_LE(plan.offset[a] + plan.capacity[a], plan.total) << v.name;
    sum += plan.capacity[a];
    for (size_t b = a + 1; b < g.values.size(); ++b) {
      if (plan.offset[b] < 0) continue;
      bool live_together =
          def[a] <= std::max(last[b], def[b]) && def[b] <= std::max(last[a], def[a]);
      bool overlap = plan.offset[a] < plan.offset[b] + plan.capacity[b] &&
                     plan.offset[b] < plan.offset[a] + plan.capacity[a];
      EXPECT_FALSE(live_together && overlap) << v.name << " and " << g.values[b].name;
    }
  }
  // Every activation but the logits (a graph output, returned to the caller) is planned, and
  // reuse makes the arena much smaller than the sum of the values.
  EXPECT_EQ(planned, static_cast<int>(g.nodes.size()) - 1);
  EXPECT_LT(plan.total * 3, sum);
  // A value read by a node that may alias its inputs stays reserved to the end.
  auto none = [](const ir::Node&) { return false; };
  EXPECT_EQ(ir::plan_memory(g, dim_max, none).total, 0);
}

TEST(MemoryPlan, CpuContextsRunTheGoldensOutOfTheirArena) {
  BuildConfig config;
  config.backend = Backend::kCpu;
  auto engine =
      Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset13.onnx")), config);
  auto ctx = engine->create_execution_context(2);
  EXPECT_GT(ctx->activation_arena_bytes(), 0);
  expect_fixture_goldens(*ctx, "cpu backend with arena");
  expect_fixture_goldens(*ctx, "cpu backend with arena, second pass");
  BuildConfig ref;
  auto ref_ctx = Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset13.onnx")), ref)
                     ->create_execution_context(1);
  EXPECT_EQ(ref_ctx->activation_arena_bytes(), 0);
}

}  // namespace
}  // namespace gptrt::test
