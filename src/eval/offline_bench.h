#pragma once
// The offline speed figures of one loaded model on the CPU: prefill tokens/s, decode tokens/s after
// each context depth, aggregate tokens/s of batched decode, the memory bandwidth this machine
// streams and decode's share of the bandwidth roofline, and peak RSS, at each thread count, each
// repeated and summarised as min / median / max. `retort bench MODEL...` and bench/bench_inference
// run this; the timed pieces are in timed_forward.h.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "eval/sample_stats.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"

namespace retort {

struct OfflineBenchOptions {
  std::vector<int> threads{1, 2};
  int64_t prompt_tokens = 512;         // prefill length; also the context of every batched sequence
  int64_t decode_tokens = 64;          // greedy steps at each depth; batched steps per batch size
  std::vector<int64_t> depths{0, 4096};  // positions already in the cache when decode starts
  std::vector<int64_t> batches{1, 8, 16};
  int reps = 3;
  DType kv_type = DType::F16;
  int64_t probe_mib = 1024;  // the bandwidth probe's buffer; larger than every cache
  ActivationPrecision activation = ActivationPrecision::Bf16;  // bench_model_file only: what `retort run` uses
};

// Throws with what to change when the options cannot run on this model (too many positions, ...).
void check_offline_bench_options(const OfflineBenchOptions& options, const ModelConfig& config);

struct DepthFigures {
  int64_t depth = 0;
  Spread decode_tokens_per_second;
  double roofline_tokens_per_second = 0;  // bandwidth ÷ (weights + KV bytes read per token)
  std::optional<double> joules_per_token;  // decode energy from RAPL counters, where the machine has them
};

struct BatchFigures {
  int64_t batch = 0;
  Spread aggregate_tokens_per_second;  // batch × steps ÷ seconds
  Spread step_milliseconds;
};

struct ThreadsFigures {
  int threads = 0;
  Spread bandwidth_gbs;
  Spread prefill_tokens_per_second;
  std::vector<DepthFigures> depths;
  std::vector<BatchFigures> batches;
  double peak_rss_mib = 0;   // highest resident size while this thread count ran
  bool peak_rss_reset = true;  // false: the kernel refused the reset, the peak counts earlier phases
};

struct ModelBenchFigures {
  std::string path;
  std::string architecture;
  std::string backend;
  double weight_gb_per_token = 0;
  double load_seconds = 0;
  double rss_after_load_mib = 0;
  std::string energy_unavailable;  // why joules_per_token is absent (empty when measured)
  std::vector<ThreadsFigures> threads;
};

enum class BenchPhase { Prefill, Decode, BatchedDecode };

// What a caller sees while the bench runs. `phase_begins` / `phase_ends` bracket each timed
// phase exactly (e.g. to reset and read a profiler); `size` is the prompt length, the depth or
// the batch. All are optional.
struct OfflineBenchObserver {
  std::function<void(const std::string& line)> progress;
  std::function<void(BenchPhase phase, int64_t size)> phase_begins;
  std::function<void(BenchPhase phase, int64_t size)> phase_ends;
  std::function<void(const ThreadsFigures& figures)> threads_done;
};

// Runs every thread count on a model already loaded; fills everything but path, backend and the
// load figures, which only the loader knows.
ModelBenchFigures bench_loaded_model(LoadedModel& model, const OfflineBenchOptions& options,
                                     const OfflineBenchObserver& observer = {});

// Loads PATH (HF directory or GGUF) on the CPU backend, with the activation precision `retort run`
// uses, and benches it.
ModelBenchFigures bench_model_file(const std::string& path, const OfflineBenchOptions& options,
                                   const OfflineBenchObserver& observer = {});

std::string offline_bench_markdown(const std::vector<ModelBenchFigures>& models, const OfflineBenchOptions& options);
std::string offline_bench_json(const std::vector<ModelBenchFigures>& models, const OfflineBenchOptions& options);

}  // namespace retort
