#include "core/stats.h"

#include <algorithm>
#include <cmath>

namespace gptrt {

double LatencyStats::percentile(double p) const {
  if (sorted.empty()) return 0;
  double rank = std::ceil(std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size()));
  size_t i = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return sorted[std::min(i, sorted.size() - 1)];
}

LatencyStats compute_stats(std::vector<double> samples) {
  LatencyStats s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.count = samples.size();
  s.min = samples.front();
  s.max = samples.back();
  double sum = 0;
  for (double v : samples) sum += v;
  s.mean = sum / static_cast<double>(s.count);
  size_t mid = s.count / 2;
  s.median = s.count % 2 ? samples[mid] : 0.5 * (samples[mid - 1] + samples[mid]);
  double var = 0;
  for (double v : samples) var += (v - s.mean) * (v - s.mean);
  s.stddev = s.count > 1 ? std::sqrt(var / static_cast<double>(s.count - 1)) : 0;
  s.sorted = std::move(samples);
  return s;
}

}  // namespace gptrt
