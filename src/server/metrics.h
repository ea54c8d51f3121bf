#pragma once
// Prometheus text-format metrics for /metrics: requests by endpoint and status, time to first token
// and inter-token latency histograms, and the engine's gauges (queue depth, running sequences, KV
// cache use) and token counters read from the scheduler when scraped.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/scheduler.h"

namespace retort::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // "name_bucket{le=…} n" lines (cumulative), then _sum and _count.
  std::string render(const std::string& name, const std::string& help) const;

 private:
  std::vector<double> upper_bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; one extra for +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  void count_request(const std::string& endpoint, int status);
  void observe_time_to_first_token(double seconds);
  void observe_inter_token(double seconds);
  void observe_request_duration(double seconds);
  std::string render(const SchedulerStats& engine, bool ready) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  Histogram time_to_first_token_;
  Histogram inter_token_;
  Histogram request_duration_;
};

}  // namespace retort::server
