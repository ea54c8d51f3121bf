#pragma once
// Prometheus text-format metrics for /metrics: requests by endpoint and status, time to first token
// and inter-token latency histograms, and the engine's gauges (queue depth, running sequences, KV
// cache use) and token counters read from the scheduler when scraped.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/scheduler.h"
#include "util/energy_meter.h"

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

// The `endpoint` label for a request path: one of the server's route templates ("/v1/models/{model}"
// for any model id) or "other". Never the client's text: a label value from the request line could
// forge sample lines (a quote and a newline) and every distinct path would add a series.
std::string_view endpoint_label(std::string_view path);

// One served model's engine numbers, under the name clients select it by. The names come from the
// server's configuration, never from a request, so they are safe as label values.
struct ModelEngineStats {
  std::string name;
  SchedulerStats stats;
};

// Under a memory budget (--max-memory): one model's residency, for the retort_model_* series.
struct ModelResidencyStats {
  std::string name;
  bool loaded = false;
  uint64_t memory_bytes = 0;  // estimated: weights + KV cache
  int64_t in_flight = 0;      // requests holding it
  uint64_t loads = 0;
  uint64_t unloads = 0;
  double load_seconds = 0;  // spent loading it, all loads together
};

// retort_memory_budget_bytes, then per model (always labelled model="NAME", however many):
// retort_model_loaded, retort_model_memory_bytes, retort_model_requests_in_flight,
// retort_model_loads_total, retort_model_unloads_total, retort_model_load_seconds_total.
std::string render_residency(const std::vector<ModelResidencyStats>& models, uint64_t budget_bytes);

class ServerMetrics {
 public:
  ServerMetrics();
  // `path` is mapped through endpoint_label(); a status outside 100-599 counts as 0.
  void count_request(std::string_view path, int status);
  void observe_time_to_first_token(double seconds);
  void observe_inter_token(double seconds);
  void observe_request_duration(double seconds);
  // The engine's gauges and counters carry a model="NAME" label when several models are served;
  // with one (or none yet) they are unlabelled, as they were before several could be served.
  std::string render_models(const std::vector<ModelEngineStats>& engines, bool ready) const;
  std::string render(const SchedulerStats& engine, bool ready) const { return render_models({{"", engine}}, ready); }

 private:
  // Energy where the machine has RAPL counters: joules, per generated token, kWh per 10,000
  // completed requests (the guide's unit). Elsewhere /metrics says 0 in retort_energy_available.
  std::string render_energy(uint64_t generated_tokens) const;
  mutable EnergyMeter energy_;
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  Histogram time_to_first_token_;
  Histogram inter_token_;
  Histogram request_duration_;
};

}  // namespace retort::server
