#include "generate/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace gptrt::generate {

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

}  // namespace gptrt::generate
