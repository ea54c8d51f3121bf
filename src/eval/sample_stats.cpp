#include "eval/sample_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "util/error.h"

namespace retort {

double percentile(std::vector<double> values, double p) {
  require(p > 0 && p <= 100, ErrorKind::Internal, "percentile {} is outside (0, 100]", p);
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

double median(std::vector<double> values) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2.0;
}

Spread spread_of(const std::vector<double>& samples) {
  Spread spread;
  spread.samples = samples;
  if (samples.empty()) {
    spread.min = spread.median = spread.max = std::numeric_limits<double>::quiet_NaN();
    return spread;
  }
  const auto [lowest, highest] = std::minmax_element(samples.begin(), samples.end());
  spread.min = *lowest;
  spread.max = *highest;
  spread.median = median(samples);
  return spread;
}

LatencyPercentiles latency_percentiles(const std::vector<double>& values) {
  LatencyPercentiles result;
  result.count = values.size();
  result.p50 = percentile(values, 50);
  result.p90 = percentile(values, 90);
  result.p99 = percentile(values, 99);
  result.mean = values.empty() ? std::numeric_limits<double>::quiet_NaN()
                               : std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  return result;
}

}  // namespace retort
