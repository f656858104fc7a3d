// Generation with a KV cache (gptrt.Generator; gptrt.generate and gptrt.stream sit on it).
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>

#include "bindings.h"
#include "callbacks.h"
#include "gptrt/generate.h"

namespace gptrt::python {

void bind_generate(nb::module_& m) {
  nb::class_<GenerationConfig>(m, "GenerationConfig", "Sampling settings of one request.")
      .def(
          "__init__",
          [](GenerationConfig* c, int64_t max_new_tokens, bool do_sample, float temperature,
             int64_t top_k, float top_p, float repetition_penalty, uint64_t seed,
             int64_t eos_token_id) {
            new (c) GenerationConfig();
            c->max_new_tokens = max_new_tokens;
            c->do_sample = do_sample;
            c->temperature = temperature;
            c->top_k = top_k;
            c->top_p = top_p;
            c->repetition_penalty = repetition_penalty;
            c->seed = seed;
            c->eos_token_id = eos_token_id;
          },
          nb::arg("max_new_tokens") = 20, nb::arg("do_sample") = false,
          nb::arg("temperature") = 1.0f, nb::arg("top_k") = 0, nb::arg("top_p") = 1.0f,
          nb::arg("repetition_penalty") = 1.0f, nb::arg("seed") = 0, nb::arg("eos_token_id") = -1)
      .def_rw("max_new_tokens", &GenerationConfig::max_new_tokens)
      .def_rw("do_sample", &GenerationConfig::do_sample)
      .def_rw("temperature", &GenerationConfig::temperature)
      .def_rw("top_k", &GenerationConfig::top_k)
      .def_rw("top_p", &GenerationConfig::top_p)
      .def_rw("repetition_penalty", &GenerationConfig::repetition_penalty)
      .def_rw("seed", &GenerationConfig::seed)
      .def_rw("eos_token_id", &GenerationConfig::eos_token_id);

  nb::class_<Generator>(m, "Generator",
                        "KV-cache generation on an engine whose GPT-2 decoder was recognised.")
      .def(
          "__init__",
          [](Generator* g, std::shared_ptr<Engine> engine, int threads) {
            new (g) Generator(engine, threads);
          },
          nb::arg("engine"), nb::arg("threads") = 0)
      .def(
          "generate",
          [](Generator& g, const std::vector<std::vector<int64_t>>& prompts,
             const GenerationConfig& c, nb::object on_token) {
            auto cb = std::make_shared<PyCallback>(on_token);
            TokenCallback call;
            if (!cb->empty()) call = [cb](size_t row, int64_t token) { return (*cb)(row, token); };
            GenerationResult r;
            {
              nb::gil_scoped_release release;
              r = g.generate(prompts, c, call);
            }
            nb::dict t;
            t["prompt_tokens"] = r.timings.prompt_tokens;
            t["prefill_ms"] = r.timings.prefill_ms;
            t["decode_ms_per_token"] = r.timings.decode_ms_per_token;
            t["tokens_per_s"] = r.timings.tokens_per_s;
            return nb::make_tuple(r.generated, t);
          },
          nb::arg("prompts"), nb::arg("config"), nb::arg("on_token").none(),
          "Generates for token-id prompts; (new tokens per prompt, timings). on_token(row, "
          "token) is called for each new token (False stops that row). The GIL is released.")
      .def_prop_ro("vocab_size", &Generator::vocab_size)
      .def_prop_ro("n_positions", &Generator::n_positions);
}

}  // namespace gptrt::python
