#include "hf/make_model.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <vector>

#include "core/checked.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::hf {
namespace {

// splitmix64 + Box-Muller: portable and reproducible across compilers (std distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() {
    return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  }
  float normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u = uniform(), v = uniform();
    double r = std::sqrt(-2.0 * std::log(u));
    spare_ = static_cast<float>(r * std::sin(6.283185307179586 * v));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(6.283185307179586 * v));
  }

 private:
  uint64_t s_;
  bool has_spare_ = false;
  float spare_ = 0;
};

struct Entry {
  std::string name;
  std::vector<int64_t> shape;
  float mean, stddev;
};

}  // namespace

void make_model(const Gpt2Config& c, uint64_t seed, const std::string& dir) {
  platform::make_directories(dir);
  int64_t C = c.n_embd, F = c.inner();
  float proj_std = 0.02f / std::sqrt(2.0f * static_cast<float>(c.n_layer));
  std::vector<Entry> entries;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    std::string p = "transformer.h." + std::to_string(l) + ".";
    entries.push_back({p + "attn.c_attn.bias", {3 * C}, 0.f, 0.01f});
    entries.push_back({p + "attn.c_attn.weight", {C, 3 * C}, 0.f, 0.02f});
    entries.push_back({p + "attn.c_proj.bias", {C}, 0.f, 0.01f});
    entries.push_back({p + "attn.c_proj.weight", {C, C}, 0.f, proj_std});
    entries.push_back({p + "ln_1.bias", {C}, 0.f, 0.01f});
    entries.push_back({p + "ln_1.weight", {C}, 1.f, 0.05f});
    entries.push_back({p + "ln_2.bias", {C}, 0.f, 0.01f});
    entries.push_back({p + "ln_2.weight", {C}, 1.f, 0.05f});
    entries.push_back({p + "mlp.c_fc.bias", {F}, 0.f, 0.01f});
    entries.push_back({p + "mlp.c_fc.weight", {C, F}, 0.f, 0.02f});
    entries.push_back({p + "mlp.c_proj.bias", {C}, 0.f, 0.01f});
    entries.push_back({p + "mlp.c_proj.weight", {F, C}, 0.f, proj_std});
  }
  entries.push_back({"transformer.ln_f.bias", {C}, 0.f, 0.01f});
  entries.push_back({"transformer.ln_f.weight", {C}, 1.f, 0.05f});
  entries.push_back({"transformer.wpe.weight", {c.n_positions, C}, 0.f, 0.01f});
  entries.push_back({"transformer.wte.weight", {c.vocab_size, C}, 0.f, 0.02f});
  if (!c.tie_word_embeddings) entries.push_back({"lm_head.weight", {c.vocab_size, C}, 0.f, 0.02f});

  std::string header =
      "{\"__metadata__\":{\"format\":\"pt\",\"producer\":\"gptrt make-model seed " +
      std::to_string(seed) + "\"}";
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    uint64_t bytes = 4;
    std::string dims;
    for (int64_t d : e.shape) {
      bytes *= static_cast<uint64_t>(d);
      dims += (dims.empty() ? "" : ",") + std::to_string(d);
    }
    header += ",\"" + e.name + "\":{\"dtype\":\"F32\",\"shape\":[" + dims + "],\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  // Both files through exclusive temporaries renamed into place: a planted
  // model.safetensors.partial link is never written through, a failure leaves nothing.
  platform::AtomicFile out(dir + "/model.safetensors");
  uint64_t len = header.size();
  out.write(&len, 8);
  out.write(header.data(), header.size());
  Rng rng(seed);
  std::vector<float> buf;
  for (const Entry& e : entries) {
    buf.resize(static_cast<size_t>(checked::numel(e.shape, "tensor '" + e.name + "'")));
    for (float& x : buf) x = e.mean + e.stddev * rng.normal();
    out.write(buf.data(), buf.size() * 4);
  }
  out.commit();
  std::string config = c.to_json();
  platform::write_file_atomically(dir + "/config.json", config.data(), config.size());
}

}  // namespace gptrt::hf
