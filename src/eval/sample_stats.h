#pragma once
// Summaries of repeated measurements: the median of a few timed repetitions (offline bench) and
// latency percentiles over many requests (serve bench).
#include <cstddef>
#include <vector>

namespace retort {

// The p-th percentile (0 < p ≤ 100) by the nearest-rank rule: the smallest value such that at least
// p % of the values are ≤ it, i.e. sorted[ceil(p/100 · n) − 1]. Always one of the values, never an
// interpolation, so a p99 of 10 requests is the slowest request, not a number no request took.
// NaN for no values.
double percentile(std::vector<double> values, double p);

// The middle value, or the mean of the two middle values for an even count; NaN for none.
double median(std::vector<double> values);

struct Spread {
  double min = 0;
  double median = 0;
  double max = 0;
  std::vector<double> samples;  // in the order measured
};
Spread spread_of(const std::vector<double>& samples);

struct LatencyPercentiles {
  size_t count = 0;
  double p50 = 0;  // all NaN when count is 0
  double p90 = 0;
  double p99 = 0;
  double mean = 0;
};
LatencyPercentiles latency_percentiles(const std::vector<double>& values);

}  // namespace retort
