#include "eval/offline_bench.h"

#include <algorithm>

#include <fmt/format.h>

#include "eval/timed_forward.h"
#include "util/energy_meter.h"
#include "util/error.h"
#include "util/process_memory.h"
#include "util/thread_pool.h"
#include "util/timer.h"

namespace retort {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

void check_list_at_least(const std::vector<int64_t>& values, int64_t lowest, const char* flag) {
  require(!values.empty(), ErrorKind::InvalidInput, "{} needs at least one value", flag);
  for (int64_t value : values)
    require(value >= lowest, ErrorKind::InvalidInput, "{} values must be at least {}, not {}", flag, lowest, value);
}

// KV positions for the longest single sequence and for the largest batch (never both at once).
int64_t cache_positions(const OfflineBenchOptions& options) {
  const int64_t block = KvCache::kDefaultBlockSize;
  int64_t single = options.prompt_tokens;
  for (int64_t depth : options.depths) single = std::max(single, depth + options.decode_tokens);
  int64_t batched = 0;
  for (int64_t batch : options.batches)
    batched = std::max(batched, batched_decode_positions(batch, options.prompt_tokens, options.decode_tokens, block));
  return std::max(single + block, batched);
}

std::string size_label(BenchPhase phase, int64_t size) {
  switch (phase) {
    case BenchPhase::Prefill: return fmt::format("prefill of {} tokens", size);
    case BenchPhase::Decode: return fmt::format("decode at depth {}", size);
    case BenchPhase::BatchedDecode: return fmt::format("batched decode, batch {}", size);
  }
  return {};
}

// Times `measure` between the observer's phase brackets and reports the rate it returns.
double observed(const OfflineBenchObserver& observer, BenchPhase phase, int64_t size, const std::string& rep_label,
                const std::function<double()>& measure) {
  if (observer.phase_begins) observer.phase_begins(phase, size);
  const double tokens_per_second = measure();
  if (observer.phase_ends) observer.phase_ends(phase, size);
  if (observer.progress)
    observer.progress(fmt::format("{} {}: {:.2f} tok/s", rep_label, size_label(phase, size), tokens_per_second));
  return tokens_per_second;
}

struct RepSamples {
  std::vector<double> prefill;
  std::vector<std::vector<double>> decode;       // [depth][rep]
  std::vector<std::vector<double>> batched;      // [batch][rep], aggregate tok/s
  std::vector<std::vector<double>> batched_ms;   // [batch][rep], ms per step
  std::vector<double> decode_joules;             // [depth], summed over reps (with an energy meter)
};

void run_one_rep(Transformer& model, KvCache& cache, const std::vector<int32_t>& prompt,
                 const OfflineBenchOptions& options, const OfflineBenchObserver& observer, const std::string& label,
                 EnergyMeter* energy, RepSamples& samples) {
  std::vector<float> logits;
  const double prompt_tokens = static_cast<double>(options.prompt_tokens);
  const double decode_tokens = static_cast<double>(options.decode_tokens);
  samples.prefill.push_back(observed(observer, BenchPhase::Prefill, options.prompt_tokens, label, [&] {
    KvSequence sequence;
    const double seconds = time_prefill(model, cache, sequence, prompt, logits);
    cache.release(sequence);
    return prompt_tokens / seconds;
  }));
  for (size_t d = 0; d < options.depths.size(); ++d) {
    const int64_t depth = options.depths[d];
    KvSequence sequence;
    if (depth > 0) fill_synthetic_context(model, cache, sequence, depth);
    const double joules_before = energy != nullptr ? energy->joules() : 0;
    samples.decode[d].push_back(observed(observer, BenchPhase::Decode, depth, label, [&] {
      return decode_tokens / time_greedy_decode(model, cache, sequence, 42, options.decode_tokens, logits);
    }));
    if (energy != nullptr) samples.decode_joules[d] += energy->joules() - joules_before;
    cache.release(sequence);
  }
  for (size_t b = 0; b < options.batches.size(); ++b) {
    const int64_t batch = options.batches[b];
    double step_seconds = 0;
    samples.batched[b].push_back(observed(observer, BenchPhase::BatchedDecode, batch, label, [&] {
      step_seconds = time_batched_decode_step(model, cache, batch, options.prompt_tokens, options.decode_tokens);
      return static_cast<double>(batch) / step_seconds;
    }));
    samples.batched_ms[b].push_back(step_seconds * 1e3);
  }
}

ThreadsFigures bench_threads(LoadedModel& loaded, KvCache& cache, const std::vector<int32_t>& prompt, int threads,
                             const OfflineBenchOptions& options, const OfflineBenchObserver& observer,
                             EnergyMeter* energy) {
  ThreadsFigures figures;
  figures.threads = threads;
  std::vector<double> bandwidth;
  for (int rep = 0; rep < options.reps; ++rep) {
    bandwidth.push_back(measure_bandwidth_gbs(threads, options.probe_mib));
    if (observer.progress)
      observer.progress(fmt::format("threads {} rep {}/{}: bandwidth {:.1f} GB/s", threads, rep + 1, options.reps,
                                    bandwidth.back()));
  }
  figures.bandwidth_gbs = spread_of(bandwidth);
  set_thread_count(threads);
  figures.peak_rss_reset = reset_peak_resident();  // the probe's buffer is not the model's memory
  Transformer& model = *loaded.transformer;
  warm_up(model, cache, prompt);
  RepSamples samples;
  samples.decode.resize(options.depths.size());
  samples.decode_joules.assign(options.depths.size(), 0.0);
  samples.batched.resize(options.batches.size());
  samples.batched_ms.resize(options.batches.size());
  for (int rep = 0; rep < options.reps; ++rep)
    run_one_rep(model, cache, prompt, options, observer,
                fmt::format("threads {} rep {}/{}:", threads, rep + 1, options.reps), energy, samples);
  figures.prefill_tokens_per_second = spread_of(samples.prefill);
  const double weight_bytes = weight_bytes_per_token(model.weights());
  for (size_t d = 0; d < options.depths.size(); ++d) {
    const double kv_bytes = kv_bytes_per_token(loaded.config, options.kv_type, options.depths[d], options.decode_tokens);
    figures.depths.push_back({options.depths[d], spread_of(samples.decode[d]),
                              figures.bandwidth_gbs.max * 1e9 / (weight_bytes + kv_bytes), std::nullopt});
    if (energy != nullptr)  // whole-machine counters: other work running beside the bench counts too
      figures.depths.back().joules_per_token = samples.decode_joules[d] / (options.decode_tokens * options.reps);
  }
  for (size_t b = 0; b < options.batches.size(); ++b)
    figures.batches.push_back({options.batches[b], spread_of(samples.batched[b]), spread_of(samples.batched_ms[b])});
  figures.peak_rss_mib = static_cast<double>(peak_resident_bytes()) / kMiB;
  return figures;
}

}  // namespace

void check_offline_bench_options(const OfflineBenchOptions& options, const ModelConfig& config) {
  require(!options.threads.empty(), ErrorKind::InvalidInput, "--threads needs at least one value");
  for (int threads : options.threads)
    require(threads >= 1 && threads <= 1024, ErrorKind::InvalidInput, "--threads values must be 1 to 1024, not {}",
            threads);
  require(options.reps >= 1, ErrorKind::InvalidInput, "--reps must be at least 1, not {}", options.reps);
  require(options.prompt_tokens >= 1, ErrorKind::InvalidInput, "--prompt must be at least 1 token");
  require(options.decode_tokens >= 1, ErrorKind::InvalidInput, "--decode must be at least 1 token");
  check_list_at_least(options.depths, 0, "--depth");
  if (!options.batches.empty()) check_list_at_least(options.batches, 1, "--batch");
  const int64_t positions = config.max_positions;
  const int64_t deepest = *std::max_element(options.depths.begin(), options.depths.end());
  require(deepest + options.decode_tokens <= positions, ErrorKind::InvalidInput,
          "--depth {} + --decode {} positions exceed the model's {} positions; pass a smaller --depth", deepest,
          options.decode_tokens, positions);
  // Batched sequences decode after --prompt positions of context.
  const int64_t longest_prompt = options.prompt_tokens + (options.batches.empty() ? 0 : options.decode_tokens + 1);
  require(longest_prompt <= positions, ErrorKind::InvalidInput,
          "--prompt {} needs {} positions with batched decode's steps, more than the model's {}; pass a smaller "
          "--prompt", options.prompt_tokens, longest_prompt, positions);
}

ModelBenchFigures bench_loaded_model(LoadedModel& loaded, const OfflineBenchOptions& options,
                                     const OfflineBenchObserver& observer) {
  check_offline_bench_options(options, loaded.config);
  ModelBenchFigures figures;
  figures.path = loaded.path;
  figures.architecture = std::string(architecture_name(loaded.config.arch));
  figures.weight_gb_per_token = weight_bytes_per_token(loaded.transformer->weights()) / 1e9;
  KvCache cache(loaded.config, cache_positions(options), KvCache::kDefaultBlockSize, options.kv_type);
  const std::vector<int32_t> prompt = synthetic_prompt(options.prompt_tokens, loaded.config.vocab_size);
  EnergyMeter energy;
  figures.energy_unavailable = energy.why_not();
  for (int threads : options.threads) {
    figures.threads.push_back(
        bench_threads(loaded, cache, prompt, threads, options, observer, energy.available() ? &energy : nullptr));
    if (observer.threads_done) observer.threads_done(figures.threads.back());
  }
  return figures;
}

ModelBenchFigures bench_model_file(const std::string& path, const OfflineBenchOptions& options,
                                   const OfflineBenchObserver& observer) {
  if (observer.progress) observer.progress(fmt::format("loading {}", path));
  CpuBackend backend(options.activation);
  Timer timer;
  auto loaded = load_model(path, backend);
  const double load_seconds = timer.seconds();
  const double rss_after_load_mib = static_cast<double>(resident_bytes()) / kMiB;
  ModelBenchFigures figures = bench_loaded_model(*loaded, options, observer);
  figures.backend = backend.name();
  figures.load_seconds = load_seconds;
  figures.rss_after_load_mib = rss_after_load_mib;
  return figures;
}

}  // namespace retort
