// Latency statistics as trtexec and the benchmark report them.
#pragma once

#include <cstddef>
#include <vector>

namespace gptrt {

/// Summary of a list of timings (milliseconds).
struct LatencyStats {
  size_t count = 0;
  double min = 0, max = 0, mean = 0, median = 0, stddev = 0;
  /// Nearest-rank percentile of the samples, p in [0, 100].
  double percentile(double p) const;
  std::vector<double> sorted;  // ascending
};

/// Computes LatencyStats; an empty input gives count 0 and zeros.
LatencyStats compute_stats(std::vector<double> samples);

}  // namespace gptrt
