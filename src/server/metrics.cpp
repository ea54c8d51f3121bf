#include "server/metrics.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "util/log.h"

namespace retort::server {

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const auto bucket = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  ++counts_[static_cast<size_t>(bucket)];
  sum_ += value;
  ++count_;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
  std::string out = fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < upper_bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, upper_bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, count_);
  out += fmt::format("{}_sum {}\n{}_count {}\n", name, sum_, name, count_);
  return out;
}

ServerMetrics::ServerMetrics()
    : time_to_first_token_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      inter_token_({0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5}),
      request_duration_({0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}) {
  if (energy_.available()) {
    spdlog::info("energy: counters {}", fmt::join(energy_.domain_names(), ", "));
  } else {
    spdlog::info("energy: not measured: {}", energy_.why_not());
  }
}

std::string_view endpoint_label(std::string_view path) {
  static constexpr std::string_view kRoutes[] = {"/v1/chat/completions", "/v1/completions", "/v1/models",
                                                 "/health", "/metrics", "/"};
  for (std::string_view route : kRoutes) {
    if (path == route) return route;
  }
  if (path.starts_with("/v1/models/")) return "/v1/models/{model}";
  return "other";
}

void ServerMetrics::count_request(std::string_view path, int status) {
  const int bounded_status = status >= 100 && status <= 599 ? status : 0;
  std::lock_guard lock(mutex_);
  ++requests_[{std::string(endpoint_label(path)), bounded_status}];
}

void ServerMetrics::observe_time_to_first_token(double seconds) {
  std::lock_guard lock(mutex_);
  time_to_first_token_.observe(seconds);
}

void ServerMetrics::observe_inter_token(double seconds) {
  std::lock_guard lock(mutex_);
  inter_token_.observe(seconds);
}

void ServerMetrics::observe_request_duration(double seconds) {
  std::lock_guard lock(mutex_);
  request_duration_.observe(seconds);
}

namespace {

std::string gauge(const std::string& name, const std::string& help, double value, const char* type = "gauge") {
  return fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
}

double kv_usage(const SchedulerStats& engine) {
  return engine.kv_blocks_total > 0
             ? static_cast<double>(engine.kv_blocks_used) / static_cast<double>(engine.kv_blocks_total)
             : 0.0;
}

// The engine's metrics, one row each: a table so that each is written once for any number of models.
struct EngineMetric {
  const char* name;
  const char* help;
  const char* type;
  double (*value)(const SchedulerStats&);
};

constexpr EngineMetric kEngineMetrics[] = {
    {"retort_queue_depth", "Requests waiting for admission", "gauge",
     [](const SchedulerStats& e) { return double(e.queued); }},
    {"retort_running_sequences", "Sequences the engine is stepping", "gauge",
     [](const SchedulerStats& e) { return double(e.running); }},
    {"retort_kv_cache_blocks_used", "KV cache blocks held by sequences", "gauge",
     [](const SchedulerStats& e) { return double(e.kv_blocks_used); }},
    {"retort_kv_cache_blocks_total", "KV cache blocks in the pool", "gauge",
     [](const SchedulerStats& e) { return double(e.kv_blocks_total); }},
    {"retort_kv_cache_usage_ratio", "Fraction of the KV cache in use", "gauge", kv_usage},
    {"retort_prompt_tokens_total", "Prompt tokens evaluated", "counter",
     [](const SchedulerStats& e) { return double(e.prompt_tokens_total); }},
    {"retort_generated_tokens_total", "Tokens generated", "counter",
     [](const SchedulerStats& e) { return double(e.generated_tokens_total); }},
    {"retort_preemptions_total", "Sequences preempted to free KV blocks", "counter",
     [](const SchedulerStats& e) { return double(e.preemptions_total); }},
    {"retort_engine_steps_total", "Batched forward steps", "counter",
     [](const SchedulerStats& e) { return double(e.steps_total); }},
    {"retort_prefix_cache_blocks", "KV blocks kept for later prompts that start with their tokens", "gauge",
     [](const SchedulerStats& e) { return double(e.kv_blocks_cached); }},
    {"retort_prefix_cache_query_tokens_total", "Prompt tokens of admitted requests (prefix cache on)", "counter",
     [](const SchedulerStats& e) { return double(e.prefix_cache_query_tokens_total); }},
    {"retort_prefix_cache_hit_tokens_total", "Prompt tokens found in the prefix cache (prefill skipped)", "counter",
     [](const SchedulerStats& e) { return double(e.prefix_cache_hit_tokens_total); }},
    {"retort_speculative_proposed_tokens_total", "Draft tokens offered for verification (--draft)", "counter",
     [](const SchedulerStats& e) { return double(e.speculation.proposed); }},
    {"retort_speculative_accepted_tokens_total", "Draft tokens the target kept", "counter",
     [](const SchedulerStats& e) { return double(e.speculation.accepted); }},
    {"retort_speculative_verify_forwards_total",
     "Per-sequence verifications (one target forward row block each)", "counter",
     [](const SchedulerStats& e) { return double(e.speculation.target_forwards); }},
    {"retort_speculative_acceptance_ratio", "Accepted / proposed draft tokens since start", "gauge",
     [](const SchedulerStats& e) { return e.speculation.acceptance_rate(); }},
    {"retort_speculative_tokens_per_forward", "Tokens each verification produced, on average", "gauge",
     [](const SchedulerStats& e) { return e.speculation.tokens_per_forward(); }},
};

// HELP and TYPE once, then one sample per model: unlabelled for a single model.
std::string engine_family(const EngineMetric& metric, const std::vector<ModelEngineStats>& engines) {
  if (engines.size() <= 1) {
    return gauge(metric.name, metric.help, engines.empty() ? 0.0 : metric.value(engines[0].stats), metric.type);
  }
  std::string out = fmt::format("# HELP {} {}\n# TYPE {} {}\n", metric.name, metric.help, metric.name, metric.type);
  for (const auto& engine : engines) {
    out += fmt::format("{}{{model=\"{}\"}} {}\n", metric.name, engine.name, metric.value(engine.stats));
  }
  return out;
}

// The residency series, one row each, written for every model as engine_family() does.
struct ResidencyMetric {
  const char* name;
  const char* help;
  const char* type;
  double (*value)(const ModelResidencyStats&);
};

constexpr ResidencyMetric kResidencyMetrics[] = {
    {"retort_model_loaded", "1 while the model is in memory (--max-memory loads models on first use)", "gauge",
     [](const ModelResidencyStats& m) { return m.loaded ? 1.0 : 0.0; }},
    {"retort_model_memory_bytes", "Estimated memory of the model once loaded: weights and KV cache", "gauge",
     [](const ModelResidencyStats& m) { return double(m.memory_bytes); }},
    {"retort_model_requests_in_flight", "Requests holding the model (it is not unloaded while any do)", "gauge",
     [](const ModelResidencyStats& m) { return double(m.in_flight); }},
    {"retort_model_loads_total", "Times the model was loaded", "counter",
     [](const ModelResidencyStats& m) { return double(m.loads); }},
    {"retort_model_unloads_total", "Times the model was unloaded to make room for another", "counter",
     [](const ModelResidencyStats& m) { return double(m.unloads); }},
    {"retort_model_load_seconds_total", "Seconds spent loading the model, all loads together", "counter",
     [](const ModelResidencyStats& m) { return m.load_seconds; }},
};

}  // namespace

std::string render_residency(const std::vector<ModelResidencyStats>& models, uint64_t budget_bytes) {
  std::string out = gauge("retort_memory_budget_bytes", "The memory budget for loaded models (--max-memory)",
                          double(budget_bytes));
  for (const ResidencyMetric& metric : kResidencyMetrics) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", metric.name, metric.help, metric.name, metric.type);
    for (const auto& model : models) {
      out += fmt::format("{}{{model=\"{}\"}} {}\n", metric.name, model.name, metric.value(model));
    }
  }
  return out;
}

std::string ServerMetrics::render_energy(uint64_t generated_tokens) const {
  std::string out = gauge("retort_energy_available", "1 when the machine exposes energy counters (RAPL, NVML)",
                          energy_.available() ? 1 : 0);
  if (!energy_.available()) return out;
  const double joules = energy_.joules();
  uint64_t completed = 0;  // under mutex_, held by render_models()
  for (const auto& [key, count] : requests_)
    if (key.second == 200 && (key.first == "/v1/chat/completions" || key.first == "/v1/completions")) completed += count;
  out += gauge("retort_energy_joules_total", "Energy since start: CPU packages and DRAM (RAPL), NVIDIA GPUs (NVML)", joules, "counter");
  const auto tokens = double(generated_tokens);
  out += gauge("retort_energy_joules_per_token", "Energy since start per generated token", tokens > 0 ? joules / tokens : 0);
  out += gauge("retort_energy_kwh_per_10k_requests", "Energy since start per 10,000 completed requests, in kWh",
               completed > 0 ? joules / 3.6e6 / double(completed) * 1e4 : 0);
  return out;
}

std::string ServerMetrics::render_models(const std::vector<ModelEngineStats>& engines, bool ready) const {
  std::lock_guard lock(mutex_);
  std::string out = "# HELP retort_requests_total HTTP requests by endpoint and status code\n"
                    "# TYPE retort_requests_total counter\n";
  for (const auto& [key, count] : requests_) {
    out += fmt::format("retort_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, count);
  }
  out += gauge("retort_ready", "1 once every model is loaded and requests are admitted", ready ? 1 : 0);
  for (const EngineMetric& metric : kEngineMetrics) out += engine_family(metric, engines);
  // The machine's energy is not split between models: it is per token of all of them.
  uint64_t generated_tokens = 0;
  for (const auto& engine : engines) generated_tokens += engine.stats.generated_tokens_total;
  out += render_energy(generated_tokens);
  out += time_to_first_token_.render("retort_time_to_first_token_seconds", "Time from request to first token");
  out += inter_token_.render("retort_inter_token_latency_seconds", "Time between streamed tokens");
  out += request_duration_.render("retort_request_duration_seconds", "Time from request to last byte");
  return out;
}

}  // namespace retort::server
