// The cpu backend's slot decoder: the fused plan walked node by node as the executor does, except
// that the rows of every sequence in a pass go through the linear layers together ([1, rows, C]),
// the embedding takes each row's position in its slot, attention appends to and reads from the
// slots' caches (sequences of any lengths in one pass), and the LM head runs on each sequence's
// last row only.
#include "backends/cpu/decoder.h"

#include <algorithm>
#include <cstring>

#include "backends/cpu/backend.h"
#include "backends/cpu/fused_kernels.h"
#include "gptrt/error.h"

namespace gptrt::cpu {
namespace {

class CpuDecoder final : public backends::SlotDecoder {
 public:
  CpuDecoder(const backends::PlanRef& plan, const backends::DecoderShape& shape, Isa isa,
             int threads)
      : owner_(plan.owner),
        g_(*plan.graph),
        isa_(isa),
        pool_(threads),
        plan_(backends::find_decoder_plan(g_, "PackedLinear",
                                          [](const ir::Node& n) {
                                            return n.domain == ir::kFusedDomain &&
                                                   has_kernel(n.op_type);
                                          })),  // attention's past inputs are not read here
        shape_(shape),
        length_(static_cast<size_t>(shape.slots), 0) {
    // Keys and values per layer: [slots, capacity, hidden], touched as slots fill.
    const Shape cache{shape.slots, shape.capacity, plan_.hidden};
    for (int64_t l = 0; l < plan_.layers; ++l) {
      k_cache_.push_back(Tensor::uninitialized(DType::kFloat32, cache));
      v_cache_.push_back(Tensor::uninitialized(DType::kFloat32, cache));
    }
  }

  void run(const std::vector<backends::SlotTokens>& seqs, float* logits, int64_t* argmax) override {
    const int64_t n = static_cast<int64_t>(seqs.size()), e = plan_.hidden;
    int64_t rows = 0;
    for (const backends::SlotTokens& s : seqs) rows += s.count;
    Tensor ids(DType::kInt64, {1, rows}), pos(DType::kInt64, {1, rows});
    std::vector<CachedSequence> cached(static_cast<size_t>(n));
    int64_t row = 0;
    for (int64_t i = 0; i < n; ++i) {
      const backends::SlotTokens& s = seqs[static_cast<size_t>(i)];
      int64_t past = length_[static_cast<size_t>(s.slot)];
      for (int64_t j = 0; j < s.count; ++j) {
        ids.data_mut<int64_t>()[row + j] = s.tokens[j];
        pos.data_mut<int64_t>()[row + j] = past + j;
      }
      cached[static_cast<size_t>(i)] = {row, s.count, past, nullptr, nullptr};
      row += s.count;
    }
    std::vector<Tensor> values(g_.values.size());
    auto value = [&](int id) -> const Tensor* {
      if (id < 0) return nullptr;
      const ir::Value& v = g_.values[static_cast<size_t>(id)];
      return v.is_constant() ? &v.constant : &values[static_cast<size_t>(id)];
    };
    std::vector<const Tensor*> in;
    int64_t layer = 0;
    for (size_t k = 0; k < g_.nodes.size(); ++k) {
      const ir::Node& node = g_.nodes[k];
      if (node.op_type == "CacheGate") continue;  // past inputs: the slots are the cache
      in.clear();
      for (int id : node.inputs) in.push_back(value(id));
      Tensor out;
      if (static_cast<int>(k) == plan_.embed) {
        in.resize(4);  // a past input's length is the slot's own here
        in[0] = &ids;
        in[1] = &pos;
        out = run_node(node, in, isa_, pool_)[0];
      } else if (node.op_type == "Attention") {
        for (int64_t i = 0; i < n; ++i) {
          int64_t slot = seqs[static_cast<size_t>(i)].slot;
          cached[static_cast<size_t>(i)].k =
              k_cache_[static_cast<size_t>(layer)].data_mut<float>() + slot * shape_.capacity * e;
          cached[static_cast<size_t>(i)].v =
              v_cache_[static_cast<size_t>(layer)].data_mut<float>() + slot * shape_.capacity * e;
        }
        out = Tensor::uninitialized(DType::kFloat32, {1, rows, e});
        slot_attention(in[0]->data<float>(), cached.data(), n, e, node.attr_int("num_heads", 1),
                       node.attr_float("scale", 1.f), out.data_mut<float>(), pool_);
        ++layer;
      } else if (static_cast<int>(k) == plan_.head) {
        // Only each sequence's last row is needed to pick its next token.
        Tensor last = Tensor::uninitialized(DType::kFloat32, {1, n, e});
        for (int64_t i = 0; i < n; ++i) {
          const CachedSequence& c = cached[static_cast<size_t>(i)];
          std::memcpy(last.data_mut<float>() + i * e,
                      in[0]->data<float>() + (c.row + c.count - 1) * e, static_cast<size_t>(e) * 4);
        }
        in[0] = &last;
        logits_ = run_node(node, in, isa_, pool_)[0];
      } else {
        out = run_node(node, in, isa_, pool_)[0];
      }
      if (!out.empty()) values[static_cast<size_t>(node.outputs[0])] = std::move(out);
    }
    for (const backends::SlotTokens& s : seqs) length_[static_cast<size_t>(s.slot)] += s.count;
    const float* l = logits_.data<float>();
    if (logits) std::memcpy(logits, l, static_cast<size_t>(n * plan_.vocab) * 4);
    if (argmax)
      for (int64_t i = 0; i < n; ++i) argmax[i] = cpu::argmax(l + i * plan_.vocab, plan_.vocab);
  }

  void reset(int slot) override { length_[static_cast<size_t>(slot)] = 0; }

  void last_logits(std::vector<float>& logits) override {
    logits.assign(logits_.data<float>(), logits_.data<float>() + logits_.numel());
  }

 private:
  std::shared_ptr<const void> owner_;  // keeps the plan's weights alive
  const ir::Graph& g_;
  Isa isa_;
  ThreadPool pool_;
  backends::DecoderPlan plan_;
  backends::DecoderShape shape_;
  std::vector<int64_t> length_;  // tokens per slot
  std::vector<Tensor> k_cache_, v_cache_;
  Tensor logits_;  // [1, seqs, vocab] of the last pass
};

}  // namespace

std::unique_ptr<backends::SlotDecoder> make_decoder(const backends::PlanRef& plan,
                                                    const backends::DecoderShape& shape, Isa isa,
                                                    int threads) {
  return std::make_unique<CpuDecoder>(plan, shape, isa, threads);
}

}  // namespace gptrt::cpu
