// Decode and prefill speed of a model on the CPU backend, with a memory-bandwidth probe run in the
// same process so decode can be reported as a fraction of the bandwidth roofline (bytes of weights
// and KV cache read per token ÷ measured bandwidth).
//
//   bench_inference MODEL [--threads 1,2] [--prompt 128] [--decode 32] [--depth 0,4096]
//                   [--kv-type f16|f32|q8] [--act-type bf16|f32] [--reps 1] [--profile]
//
// --kv-type and --act-type default to what `retort run` uses (f16, bf16).
//
// --depth D decodes --decode tokens after D positions already in the cache. Those positions are
// filled with random keys and values instead of a D-token prefill (the time of attention does not
// depend on the values, and a 4096-token prefill would dominate the run). --profile prints the time
// per op of the prefill and of the decode steps at each depth. Every figure is the best of --reps.
// Each result also goes out as one `RESULT key=value ...` line for scripts (bench/compare_llama_cpp.sh).
//
// The measuring is eval/offline_bench (what `retort bench MODEL` runs); this program keeps the
// format the scripts parse and adds the per-op profile.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "eval/offline_bench.h"
#include "eval/timed_forward.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/profiling_backend.h"
#include "util/process_memory.h"
#include "util/thread_pool.h"
#include "util/timer.h"

using namespace retort;

namespace {

std::vector<int64_t> parse_list(const std::string& value) {
  std::vector<int64_t> values;
  for (size_t at = 0; at < value.size();) {
    size_t comma = value.find(',', at);
    values.push_back(std::stoll(value.substr(at, comma - at)));
    at = comma == std::string::npos ? value.size() : comma + 1;
  }
  return values;
}

struct Options {
  std::string model;
  OfflineBenchOptions bench;
  bool profile = false;
};

Options parse(int argc, char** argv) {
  Options o;
  o.model = argv[1];
  o.bench.threads = {1, 2};
  o.bench.prompt_tokens = 128;
  o.bench.decode_tokens = 32;
  o.bench.depths = {0};
  o.bench.batches = {};
  o.bench.reps = 1;
  for (int i = 2; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "--profile") {
      o.profile = true;
      continue;
    }
    if (i + 1 >= argc) throw std::runtime_error("option " + key + " needs a value");
    const std::string value = argv[++i];
    if (key == "--threads") {
      o.bench.threads.clear();
      for (int64_t threads : parse_list(value)) o.bench.threads.push_back(static_cast<int>(threads));
    } else if (key == "--prompt") o.bench.prompt_tokens = std::stoll(value);
    else if (key == "--decode") o.bench.decode_tokens = std::stoll(value);
    else if (key == "--depth") o.bench.depths = parse_list(value);
    else if (key == "--reps") o.bench.reps = std::max(1, std::stoi(value));
    else if (key == "--kv-type") o.bench.kv_type = kv_cache_type(value);
    else if (key == "--act-type") o.bench.activation = activation_precision(value);
    else throw std::runtime_error("unknown option " + key);
  }
  return o;
}

double resident_mib() { return static_cast<double>(resident_bytes()) / 1048576.0; }

// The table rows and RESULT lines of one thread count; every figure the best of the repetitions.
void print_rows(const ThreadsFigures& run, const OfflineBenchOptions& options) {
  const double prefill_rate = run.prefill_tokens_per_second.max;
  for (const DepthFigures& depth : run.depths) {
    const double decode_rate = depth.decode_tokens_per_second.max;
    const double roofline = depth.roofline_tokens_per_second;
    std::printf("| %d | %.1f | %.1f | %lld | %.2f | %.2f | %.0f%% | %.0f |\n", run.threads, run.bandwidth_gbs.max,
                prefill_rate, static_cast<long long>(depth.depth), decode_rate, roofline,
                100.0 * decode_rate / roofline, resident_mib());
    std::printf("RESULT threads=%d prompt=%lld prefill_tps=%.3f depth=%lld decode=%lld decode_tps=%.3f "
                "bandwidth_gbs=%.2f roofline_tps=%.3f roofline_share=%.3f\n",
                run.threads, static_cast<long long>(options.prompt_tokens), prefill_rate,
                static_cast<long long>(depth.depth), static_cast<long long>(options.decode_tokens), decode_rate,
                run.bandwidth_gbs.max, roofline, decode_rate / roofline);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: bench_inference MODEL [--threads 1,2] [--prompt N] [--decode N] [--depth 0,4096] "
                 "[--kv-type f16|f32|q8] [--act-type bf16|f32] [--reps N] [--profile]\n");
    return 2;
  }
  const Options options = parse(argc, argv);
  CpuBackend cpu(options.bench.activation);
  ProfilingBackend profiler(cpu);
  Backend& backend = options.profile ? static_cast<Backend&>(profiler) : cpu;
  Timer load_timer;
  auto model = load_model(options.model, backend);
  const double load_seconds = load_timer.seconds();
  const ModelConfig& config = model->config;
  // The huge-page share: a weight copy that fell back to 4 KiB pages (memory short or fragmented at
  // load) decodes slower, and this tells such a run from a slow phase of the machine.
  std::printf("model %s: %s, %.2f GB of weights read per token, backend %s, KV %s, load %.2fs, RSS after load %.0f MiB "
              "(%.0f MiB in huge pages)\n",
              options.model.c_str(), std::string(architecture_name(config.arch)).c_str(),
              weight_bytes_per_token(model->transformer->weights()) / 1e9, cpu.name().c_str(),
              std::string(kv_cache_type_name(options.bench.kv_type)).c_str(), load_seconds, resident_mib(),
              static_cast<double>(huge_page_bytes()) / (1 << 20));
  std::printf("| threads | bandwidth GB/s | prefill %lld tok/s | depth | decode tok/s | roofline tok/s | decode / roofline | RSS MiB |\n",
              static_cast<long long>(options.bench.prompt_tokens));
  std::printf("|---|---|---|---|---|---|---|---|\n");

  std::string prefill_profile;
  std::map<int64_t, std::string> decode_profiles;  // by depth; the last repetition's
  OfflineBenchObserver observer;
  if (options.profile) {
    observer.phase_begins = [&](BenchPhase, int64_t) { profiler.reset(); };
    observer.phase_ends = [&](BenchPhase phase, int64_t size) {
      (phase == BenchPhase::Prefill ? prefill_profile : decode_profiles[size]) = profiler.table();
    };
  }
  observer.threads_done = [&](const ThreadsFigures& run) {
    print_rows(run, options.bench);
    if (!options.profile) return;
    std::printf("\nprofile, prefill of %lld tokens, %d threads:\n%s",
                static_cast<long long>(options.bench.prompt_tokens), run.threads, prefill_profile.c_str());
    for (int64_t depth : options.bench.depths)
      std::printf("\nprofile, %lld decode steps at depth %lld, %d threads:\n%s",
                  static_cast<long long>(options.bench.decode_tokens), static_cast<long long>(depth), run.threads,
                  decode_profiles[depth].c_str());
  };
  bench_loaded_model(*model, options.bench, observer);
  return 0;
} catch (const std::exception& error) {
  std::fprintf(stderr, "bench_inference: %s\n", error.what());
  return 1;
}
