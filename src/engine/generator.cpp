// Generation with a KV cache on the cpu backend's fused decoder plan. The plan is walked node by
// node as the ExecutionContext does, except that the embedding takes explicit positions,
// attention appends to and reads from the cache, and the LM head runs on the last position only.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "backends/cpu/backend.h"
#include "backends/cpu/fused_kernels.h"
#include "backends/cuda/cuda_backend.h"
#include "engine/engine_impl.h"
#include "gptrt/error.h"
#include "gptrt/generate.h"
#include "platform/platform.h"

namespace gptrt {
namespace {

[[noreturn]] void not_a_decoder(const std::string& why) {
  throw Error(
      ErrorCode::kUnsupported,
      "generation needs an engine whose GPT-2 decoder was recognised, on the cpu backend: " + why +
          " (gptrt inspect --fused shows what the passes found)");
}

// Hugging Face's logits processors for one row, in generate()'s order; returns the token.
int64_t pick_token(std::vector<float>& l, const std::vector<int64_t>& seen,
                   const GenerationConfig& c, std::mt19937_64& rng) {
  if (c.repetition_penalty != 1.0f) {
    std::vector<char> done(l.size(), 0);
    for (int64_t t : seen) {
      if (done[static_cast<size_t>(t)]) continue;
      done[static_cast<size_t>(t)] = 1;
      float& x = l[static_cast<size_t>(t)];
      x = x < 0 ? x * c.repetition_penalty : x / c.repetition_penalty;
    }
  }
  if (!c.do_sample) return std::max_element(l.begin(), l.end()) - l.begin();
  if (c.temperature != 1.0f)
    for (float& x : l) x /= c.temperature;
  if (c.top_k > 0 && c.top_k < static_cast<int64_t>(l.size())) {
    std::vector<float> sorted(l);
    std::nth_element(sorted.begin(), sorted.begin() + (c.top_k - 1), sorted.end(),
                     std::greater<>());
    float kth = sorted[static_cast<size_t>(c.top_k - 1)];
    for (float& x : l)
      if (x < kth) x = -INFINITY;
  }
  float mx = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double sum = 0;
  for (size_t i = 0; i < l.size(); ++i) sum += p[i] = std::exp(double(l[i]) - mx);
  for (double& x : p) x /= sum;
  if (c.top_p < 1.0f) {
    // Drop the least likely tokens whose cumulative probability stays <= 1 - top_p (keeping at
    // least the most likely one), as TopPLogitsWarper does.
    std::vector<size_t> order(l.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return l[a] < l[b]; });
    double cum = 0;
    for (size_t k = 0; k + 1 < order.size(); ++k) {
      cum += p[order[k]];
      if (cum > 1.0 - c.top_p) break;
      p[order[k]] = 0;
    }
    sum = std::accumulate(p.begin(), p.end(), 0.0);
    for (double& x : p) x /= sum;
  }
  double u = static_cast<double>(rng() >> 11) * 0x1.0p-53, acc = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    acc += p[i];
    if (u < acc && p[i] > 0) return static_cast<int64_t>(i);
  }
  for (size_t i = p.size(); i-- > 0;)
    if (p[i] > 0) return static_cast<int64_t>(i);
  return 0;
}

}  // namespace

struct Generator::Impl {
  std::shared_ptr<const Engine> engine;
  const ir::Graph& g;
  cpu::ThreadPool pool;
  cpu::Isa isa;
  int embed = -1, head = -1;
  int64_t vocab = 0, n_positions = 0, hidden = 0;
  // KV cache: per attention layer, [batch, cache_s, hidden] keys and values.
  std::vector<std::vector<float>> k_cache, v_cache;
  std::vector<uint8_t> key_valid;  // [batch, cache_s]
  int64_t batch = 0, cache_s = 0;
  std::vector<float> logits;           // [batch, vocab] of the last step
  std::unique_ptr<cuda::Decoder> gpu;  // the CUDA backend's KV-cache decoder
  // Greedy decoding on the GPU: the rows' picks come back instead of the logits, which stay on
  // the GPU until last_logits() asks for them.
  std::vector<int64_t> picks;
  bool logits_on_gpu = false;

  Impl(std::shared_ptr<const Engine> e, int threads)
      : engine(std::move(e)),
        g(engine->impl().graph),
        pool(threads > 0 ? threads : platform::cpu_info().logical_cores),
        isa(engine->info().backend == Backend::kCpu ? cpu::isa_from_name(engine->info().target)
                                                    : cpu::Isa::kGeneric) {
    Backend backend = engine->info().backend;
    if (backend != Backend::kCpu && backend != Backend::kCuda)
      not_a_decoder(std::string("this engine is for the ") + backend_name(backend) + " backend");
    if (backend == Backend::kCpu && !cpu::isa_supported(isa))
      throw Error(ErrorCode::kEngineMismatch, "this engine was built for " + engine->info().target +
                                                  " CPUs, which this one is not");
    int attention = 0;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const ir::Node& n = g.nodes[i];
      bool runs = backend == Backend::kCuda
                      ? cuda::has_kernel(n)
                      : n.domain == ir::kFusedDomain && cpu::has_kernel(n.op_type);
      if (!runs) not_a_decoder("its plan runs " + n.describe() + " op by op");
      if (n.op_type == "Embedding") {
        if (embed >= 0) not_a_decoder("the plan has two embedding lookups");
        embed = static_cast<int>(i);
        n_positions = g.values[static_cast<size_t>(n.inputs[3])].constant.dim(0);
        hidden = g.values[static_cast<size_t>(n.inputs[3])].constant.dim(1);
      }
      if (n.op_type == "Attention") ++attention;
    }
    const ir::Node& last = g.nodes.back();
    bool has_head =
        backend == Backend::kCuda ? last.op_type == "Linear" : last.op_type == "PackedLinear";
    if (embed != 0 || attention == 0 || !has_head || last.outputs[0] != g.outputs[0])
      not_a_decoder("the plan is not embedding, decoder layers and an LM head");
    head = static_cast<int>(g.nodes.size()) - 1;
    vocab = g.values[static_cast<size_t>(g.outputs[0])].shape.dims.back().value;
    k_cache.resize(static_cast<size_t>(attention));
    v_cache.resize(static_cast<size_t>(attention));
    if (backend == Backend::kCuda) {
      std::string why;
      if (cuda::device_sm(&why).empty())
        throw Error(ErrorCode::kEngineMismatch, "this engine is for the CUDA backend and " + why);
      gpu = std::make_unique<cuda::Decoder>(std::shared_ptr<const void>(engine, engine.get()), g,
                                            engine->info().precision);
    }
  }

  // Plans the cache for `b` rows of up to `s` positions (once per generate call).
  void reserve(int64_t b, int64_t s, int64_t prompt) {
    batch = b;
    cache_s = s;
    key_valid.assign(static_cast<size_t>(b * s), 0);
    if (gpu) {
      gpu->reserve(b, s, prompt);
      return;
    }
    for (size_t l = 0; l < k_cache.size(); ++l) {
      k_cache[l].assign(static_cast<size_t>(b * s * hidden), 0.f);
      v_cache[l].assign(static_cast<size_t>(b * s * hidden), 0.f);
    }
    key_valid.assign(static_cast<size_t>(b * s), 0);
  }

  // Runs `ids` [batch, t] at `positions` (cache positions past..past+t-1); leaves the last
  // position's logits in `logits`, or on the GPU with `greedy` (each row's argmax in `picks`).
  void step(const Tensor& ids, const Tensor& positions, int64_t past, bool greedy) {
    int64_t t = ids.dim(1);
    if (gpu) {
      picks.resize(static_cast<size_t>(batch));
      gpu->step(ids.data<int64_t>(), positions.data<int64_t>(), key_valid.data(), t, past,
                greedy ? nullptr : &logits, greedy ? picks.data() : nullptr);
      logits_on_gpu = greedy;
      return;
    }
    std::vector<Tensor> slots(g.values.size());
    auto value = [&](int id) -> const Tensor* {
      if (id < 0) return nullptr;
      const ir::Value& v = g.values[static_cast<size_t>(id)];
      return v.is_constant() ? &v.constant : &slots[static_cast<size_t>(id)];
    };
    int layer = 0;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const ir::Node& n = g.nodes[i];
      std::vector<const Tensor*> in;
      for (int id : n.inputs) in.push_back(value(id));
      Tensor out;
      if (static_cast<int>(i) == embed) {
        in[0] = &ids;
        in[1] = &positions;
        out = cpu::run_node(n, in, isa, pool)[0];
      } else if (n.op_type == "Attention") {
        const Tensor& qkv = *in[0];
        out = Tensor::uninitialized(DType::kFloat32, {batch, t, hidden});
        cpu::cached_attention(qkv.data<float>(), batch, t, hidden, n.attr_int("num_heads", 1),
                              n.attr_float("scale", 1.f),
                              k_cache[static_cast<size_t>(layer)].data(),
                              v_cache[static_cast<size_t>(layer)].data(), cache_s, past,
                              key_valid.data(), out.data_mut<float>(), pool);
        ++layer;
      } else if (static_cast<int>(i) == head) {
        // Only the last position's logits are needed to pick the next token.
        const Tensor& x = *in[0];
        Tensor last = Tensor::uninitialized(DType::kFloat32, {batch, 1, hidden});
        for (int64_t r = 0; r < batch; ++r)
          std::copy_n(x.data<float>() + ((r + 1) * t - 1) * hidden, hidden,
                      last.data_mut<float>() + r * hidden);
        in[0] = &last;
        out = cpu::run_node(n, in, isa, pool)[0];
        logits.assign(out.data<float>(), out.data<float>() + batch * vocab);
        return;
      } else {
        out = cpu::run_node(n, in, isa, pool)[0];
      }
      slots[static_cast<size_t>(n.outputs[0])] = std::move(out);
    }
  }
};

Generator::Generator(std::shared_ptr<const Engine> engine, int threads)
    : impl_(std::make_unique<Impl>(std::move(engine), threads)) {}
Generator::~Generator() = default;

const std::vector<float>& Generator::last_logits() const {
  if (impl_->logits_on_gpu) {
    impl_->gpu->last_logits(impl_->logits);
    impl_->logits_on_gpu = false;
  }
  return impl_->logits;
}
int64_t Generator::vocab_size() const {
  return impl_->vocab;
}
int64_t Generator::n_positions() const {
  return impl_->n_positions;
}

GenerationResult Generator::generate(const std::vector<std::vector<int64_t>>& prompts,
                                     const GenerationConfig& c, const TokenCallback& on_token) {
  Impl& m = *impl_;
  if (prompts.empty()) throw Error(ErrorCode::kInvalidArgument, "generate: no prompts given");
  if (c.max_new_tokens < 1)
    throw Error(ErrorCode::kInvalidArgument,
                "max_new_tokens must be at least 1, found " + std::to_string(c.max_new_tokens));
  if (c.do_sample && !(c.temperature > 0))
    throw Error(ErrorCode::kInvalidArgument, "temperature must be > 0 when sampling");
  if (!(c.top_p > 0 && c.top_p <= 1))
    throw Error(ErrorCode::kInvalidArgument, "top_p must be in (0, 1]");
  if (!(c.repetition_penalty > 0))
    throw Error(ErrorCode::kInvalidArgument, "repetition_penalty must be > 0");
  if (c.pad_token_id < 0 || c.pad_token_id >= m.vocab)
    throw Error(ErrorCode::kInvalidArgument, "pad token id " + std::to_string(c.pad_token_id) +
                                                 " is outside the vocabulary [0, " +
                                                 std::to_string(m.vocab) + ")");
  int64_t b = static_cast<int64_t>(prompts.size()), len = 0;
  for (size_t r = 0; r < prompts.size(); ++r) {
    if (prompts[r].empty())
      throw Error(ErrorCode::kInvalidArgument, "prompt " + std::to_string(r) + " is empty");
    for (int64_t id : prompts[r]) {
      if (id < 0 || id >= m.vocab)
        throw Error(ErrorCode::kInvalidArgument,
                    "prompt " + std::to_string(r) + ": token id " + std::to_string(id) +
                        " is outside the model's vocabulary [0, " + std::to_string(m.vocab) + ")");
    }
    len = std::max<int64_t>(len, static_cast<int64_t>(prompts[r].size()));
  }
  if (len + c.max_new_tokens > m.n_positions)
    throw Error(ErrorCode::kShapeError,
                "a prompt of " + std::to_string(len) + " tokens plus " +
                    std::to_string(c.max_new_tokens) + " new tokens exceeds the model's " +
                    std::to_string(m.n_positions) +
                    " positions; shorten the prompt, lower the new-token count, or truncate the "
                    "prompt (gptrt generate --truncate)");
  m.reserve(b, len + c.max_new_tokens, len);

  // Prefill: left padding, positions counted over real tokens (padding gets position 1), as
  // Hugging Face derives them from the attention mask.
  Tensor ids(DType::kInt64, {b, len}), pos(DType::kInt64, {b, len});
  std::vector<int64_t> real(static_cast<size_t>(b));
  std::vector<std::vector<int64_t>> seen(static_cast<size_t>(b));
  GenerationResult result;
  result.generated.resize(static_cast<size_t>(b));
  for (int64_t r = 0; r < b; ++r) {
    const auto& p = prompts[static_cast<size_t>(r)];
    int64_t pad = len - static_cast<int64_t>(p.size());
    for (int64_t i = 0; i < len; ++i) {
      bool is_real = i >= pad;
      ids.data_mut<int64_t>()[r * len + i] =
          is_real ? p[static_cast<size_t>(i - pad)] : c.pad_token_id;
      pos.data_mut<int64_t>()[r * len + i] = is_real ? i - pad : 1;
      m.key_valid[static_cast<size_t>(r * m.cache_s + i)] = is_real ? 1 : 0;
    }
    real[static_cast<size_t>(r)] = static_cast<int64_t>(p.size());
    seen[static_cast<size_t>(r)] = p;
    result.timings.prompt_tokens += static_cast<int64_t>(p.size());
  }
  // Greedy without a repetition penalty needs only each row's argmax: the GPU picks it.
  const bool gpu_greedy = m.gpu && !c.do_sample && c.repetition_penalty == 1.0f;
  double t0 = platform::now_seconds();
  m.step(ids, pos, 0, gpu_greedy);
  double t1 = platform::now_seconds();
  result.timings.prefill_ms = (t1 - t0) * 1e3;

  std::mt19937_64 rng(c.seed);
  std::vector<char> finished(static_cast<size_t>(b), 0);
  int64_t steps = 0, produced = 0;
  // Greedy on the GPU: several decode steps per graph where the decoder allows it now
  // (Decoder::greedy_steps, asked whenever the queue is empty, so a long call switches over),
  // their picks queued [step][row] and taken one step per iteration as if each step had just
  // run. A stop inside a batch of steps leaves the later ones' picks unused.
  std::vector<int64_t> queued;
  size_t queued_at = 0;
  std::vector<float> row(static_cast<size_t>(m.vocab));
  for (int64_t n = 0; n < c.max_new_tokens; ++n) {
    Tensor next(DType::kInt64, {b, 1}), next_pos(DType::kInt64, {b, 1});
    for (int64_t r = 0; r < b; ++r) {
      size_t ri = static_cast<size_t>(r);
      int64_t tok = c.pad_token_id;
      if (!finished[ri]) {
        if (gpu_greedy) {
          tok = m.picks[ri];
        } else if (!c.do_sample && c.repetition_penalty == 1.0f) {
          // Greedy as pick_token's, without copying the row (at batch 64 the copies and a
          // scalar max_element were ~10% of a BF16 decode step).
          tok = cpu::argmax(m.logits.data() + r * m.vocab, m.vocab);
        } else {
          std::copy_n(m.logits.begin() + r * m.vocab, m.vocab, row.begin());
          tok = pick_token(row, seen[ri], c, rng);
        }
        result.generated[ri].push_back(tok);
        seen[ri].push_back(tok);
        ++produced;
        if (tok == c.eos_token_id) finished[ri] = 1;
        if (on_token && !on_token(ri, tok)) finished[ri] = 1;
      }
      next.data_mut<int64_t>()[r] = tok;
      next_pos.data_mut<int64_t>()[r] = real[ri];
      ++real[ri];
      m.key_valid[static_cast<size_t>(r * m.cache_s + len + n)] = 1;
    }
    if (n + 1 == c.max_new_tokens ||
        std::all_of(finished.begin(), finished.end(), [](char f) { return f; }))
      break;
    const int64_t left = c.max_new_tokens - 1 - n;  // decode steps this call may still run
    if (queued_at < queued.size()) {
      std::copy_n(queued.begin() + static_cast<std::ptrdiff_t>(queued_at), b, m.picks.begin());
      queued_at += static_cast<size_t>(b);
    } else if (gpu_greedy && left > 1 && m.gpu->max_greedy_steps() > 1) {
      const int64_t k = std::min(m.gpu->max_greedy_steps(), left);
      queued.resize(static_cast<size_t>(k * b));
      m.gpu->greedy_steps(next.data<int64_t>(), next_pos.data<int64_t>(), m.key_valid.data(),
                          len + n, k, queued.data());
      std::copy_n(queued.begin(), b, m.picks.begin());
      queued_at = static_cast<size_t>(b);
      m.logits_on_gpu = true;
    } else {
      m.step(next, next_pos, len + n, gpu_greedy);
    }
    ++steps;
  }
  double t2 = platform::now_seconds();
  result.timings.decode_ms_per_token = steps > 0 ? (t2 - t1) * 1e3 / static_cast<double>(steps) : 0;
  result.timings.tokens_per_s = static_cast<double>(produced) / std::max(t2 - t0, 1e-9);
  return result;
}

}  // namespace gptrt
