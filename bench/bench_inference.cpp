// Decode and prefill speed of a model on the CPU backend, with a memory-bandwidth probe run in the
// same process so decode can be reported as a fraction of the bandwidth roofline (bytes of weights
// and KV cache read per token ÷ measured bandwidth).
//
//   bench_inference MODEL [--threads 1,2] [--prompt 128] [--decode 32] [--depth 0,4096]
//                   [--kv-type f16|f32] [--act-type bf16|f32] [--reps 1] [--profile]
//
// --kv-type and --act-type default to what `retort run` uses (f16, bf16).
//
// --depth D decodes --decode tokens after D positions already in the cache. Those positions are
// filled with random keys and values instead of a D-token prefill (the time of attention does not
// depend on the values, and a 4096-token prefill would dominate the run). --profile prints the time
// per op of the prefill and of the decode steps at each depth. Every figure is the best of --reps.
// Each result also goes out as one `RESULT key=value ...` line for scripts.
#include <sys/mman.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/profiling_backend.h"
#include "model/model_loader.h"
#include "util/thread_pool.h"
#include "util/timer.h"

using namespace retort;

namespace {

// Resident set size now, from /proc/self/statm (pages → bytes).
double resident_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * 4096.0 / 1048576.0;
}

// Streams a buffer larger than every cache through the same SIMD loops the kernels use.
double measure_bandwidth_gbs(int threads) {
  set_thread_count(threads);
  const size_t floats = size_t{1024} << 20 >> 2;  // 1 GiB
  // Backed by huge pages like the loaded weights, so both see the same TLB behaviour.
  auto* buffer_memory = static_cast<float*>(::mmap(nullptr, floats * 4, PROT_READ | PROT_WRITE,
                                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ::madvise(buffer_memory, floats * 4, MADV_HUGEPAGE);
  std::span<float> buffer(buffer_memory, floats);
  std::fill(buffer.begin(), buffer.end(), 1.0f);
  std::vector<double> partial(1024);
  const cpu::IsaKernels& kernels = cpu::active_kernels();
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    Timer timer;
    thread_pool().parallel_for(floats / 4096, 64, [&](size_t begin, size_t end) {
      const float* p = buffer.data() + begin * 4096;
      const auto n = static_cast<int64_t>((end - begin) * 4096);
      partial[begin % partial.size()] = kernels.dot(p, p, n);  // reads each byte once
    });
    best = std::max(best, floats * 4.0 / timer.seconds() / 1e9);
  }
  ::munmap(buffer_memory, floats * 4);
  return best;
}

std::vector<int> parse_list(const std::string& value) {
  std::vector<int> values;
  for (size_t at = 0; at < value.size();) {
    size_t comma = value.find(',', at);
    values.push_back(std::stoi(value.substr(at, comma - at)));
    at = comma == std::string::npos ? value.size() : comma + 1;
  }
  return values;
}

struct Options {
  std::string model;
  std::vector<int> threads{1, 2};
  int prompt = 128;
  int decode = 32;
  std::vector<int> depths{0};
  DType kv_type = DType::F16;
  ActivationPrecision act_type = ActivationPrecision::Bf16;
  int reps = 1;
  bool profile = false;
};

Options parse(int argc, char** argv) {
  Options o;
  o.model = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "--profile") {
      o.profile = true;
      continue;
    }
    if (i + 1 >= argc) throw std::runtime_error("option " + key + " needs a value");
    const std::string value = argv[++i];
    if (key == "--threads") o.threads = parse_list(value);
    else if (key == "--prompt") o.prompt = std::stoi(value);
    else if (key == "--decode") o.decode = std::stoi(value);
    else if (key == "--depth") o.depths = parse_list(value);
    else if (key == "--reps") o.reps = std::max(1, std::stoi(value));
    else if (key == "--kv-type") o.kv_type = kv_cache_type(value);
    else if (key == "--act-type") o.act_type = activation_precision(value);
    else throw std::runtime_error("unknown option " + key);
  }
  return o;
}

// Bytes of weights one decode step reads: every matrix but the embedding table, of which it reads
// one row (unless the LM head is the same tensor).
double weight_bytes_per_token(const ModelWeights& w) {
  const WeightMatrix& e = w.token_embedding;
  const double embedding = e.data == w.lm_head.data ? 0.0 : double(dtype_row_bytes(e.dtype, e.cols)) * double(e.rows);
  return double(w.matrix_bytes) - embedding;
}

// Puts `depth` positions of random keys and values into every layer of the sequence's blocks.
void fill_synthetic_context(KvCache& cache, KvSequence& seq, const ModelConfig& config, int64_t depth) {
  std::mt19937 rng(7);
  std::normal_distribution<float> value(0.0f, 1.0f);
  const int64_t kv_dim = config.kv_dim();
  std::vector<float> rows(static_cast<size_t>(depth * kv_dim));
  std::vector<int64_t> slots(static_cast<size_t>(depth));
  for (int64_t p = 0; p < depth; ++p) slots[static_cast<size_t>(p)] = cache.slot(seq, p);
  CpuBackend writer;
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    for (float& v : rows) v = value(rng);
    writer.kv_write(cache.layer(layer), rows.data(), rows.data(), slots.data(), depth);
  }
  seq.length = depth;
}

struct Measured {
  double prefill_seconds = 1e30;
  std::vector<double> decode_seconds;  // per depth
};

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: bench_inference MODEL [--threads 1,2] [--prompt N] [--decode N] [--depth 0,4096] "
                 "[--kv-type f16|f32] [--act-type bf16|f32] [--reps N] [--profile]\n");
    return 2;
  }
  const Options options = parse(argc, argv);
  CpuBackend cpu(options.act_type);
  ProfilingBackend profiler(cpu);
  Backend& backend = options.profile ? static_cast<Backend&>(profiler) : cpu;
  Timer load_timer;
  auto model = load_model(options.model, backend);
  const double load_seconds = load_timer.seconds();
  const ModelConfig& config = model->config;
  const double weight_bytes = weight_bytes_per_token(model->transformer->weights());
  const double kv_element = double(dtype_size(options.kv_type));
  std::printf("model %s: %s, %.2f GB of weights read per token, backend %s, KV %s, load %.2fs, RSS after load %.0f MiB\n",
              options.model.c_str(), std::string(architecture_name(config.arch)).c_str(), weight_bytes / 1e9,
              cpu.name().c_str(), std::string(dtype_name(options.kv_type)).c_str(), load_seconds, resident_mib());
  std::printf("| threads | bandwidth GB/s | prefill %d tok/s | depth | decode tok/s | roofline tok/s | decode / roofline | RSS MiB |\n",
              options.prompt);
  std::printf("|---|---|---|---|---|---|---|---|\n");
  std::vector<int32_t> prompt(static_cast<size_t>(options.prompt));
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7919 + 13) % 1000 + 10);
  const int max_depth = *std::max_element(options.depths.begin(), options.depths.end());
  KvCache cache(config, std::max(options.prompt, max_depth) + options.decode + 16, KvCache::kDefaultBlockSize,
                options.kv_type);
  std::vector<float> logits;
  for (int threads : options.threads) {
    const double bandwidth = measure_bandwidth_gbs(threads);
    set_thread_count(threads);
    {  // Warm-up: touches every weight page once.
      KvSequence warm;
      cache.reserve(warm, 8);
      SequenceChunk chunk{&warm, std::span(prompt).first(8), LogitsWanted::Last};
      model->transformer->forward({&chunk, 1}, cache, logits);
      cache.release(warm);
    }
    Measured best;
    best.decode_seconds.assign(options.depths.size(), 1e30);
    std::string prefill_profile;
    std::vector<std::string> decode_profiles(options.depths.size());
    for (int rep = 0; rep < options.reps; ++rep) {
      profiler.reset();
      KvSequence seq;
      cache.reserve(seq, options.prompt);
      Timer timer;
      SequenceChunk chunk{&seq, std::span(prompt), LogitsWanted::Last};
      model->transformer->forward({&chunk, 1}, cache, logits);
      best.prefill_seconds = std::min(best.prefill_seconds, timer.seconds());
      prefill_profile = profiler.table();
      cache.release(seq);
      for (size_t d = 0; d < options.depths.size(); ++d) {
        const int depth = options.depths[d];
        KvSequence decoding;
        cache.reserve(decoding, depth + options.decode);
        fill_synthetic_context(cache, decoding, config, depth);
        int32_t token = 42;
        profiler.reset();
        timer.reset();
        for (int i = 0; i < options.decode; ++i) {
          SequenceChunk step{&decoding, std::span(&token, 1), LogitsWanted::Last};
          model->transformer->forward({&step, 1}, cache, logits);
          token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        }
        best.decode_seconds[d] = std::min(best.decode_seconds[d], timer.seconds());
        decode_profiles[d] = profiler.table();
        cache.release(decoding);
      }
    }
    const double prefill_rate = options.prompt / best.prefill_seconds;
    for (size_t d = 0; d < options.depths.size(); ++d) {
      const int depth = options.depths[d];
      const double decode_rate = options.decode / best.decode_seconds[d];
      // KV read per token: on average the context at the middle of the decoded stretch.
      const double kv_bytes = double(config.num_layers) * 2.0 * double(config.kv_dim()) * kv_element *
                              (depth + options.decode / 2.0);
      const double roofline = bandwidth * 1e9 / (weight_bytes + kv_bytes);
      std::printf("| %d | %.1f | %.1f | %d | %.2f | %.2f | %.0f%% | %.0f |\n", threads, bandwidth, prefill_rate, depth,
                  decode_rate, roofline, 100.0 * decode_rate / roofline, resident_mib());
      std::printf("RESULT threads=%d prompt=%d prefill_tps=%.3f depth=%d decode=%d decode_tps=%.3f bandwidth_gbs=%.2f "
                  "roofline_tps=%.3f roofline_share=%.3f\n",
                  threads, options.prompt, prefill_rate, depth, options.decode, decode_rate, bandwidth, roofline,
                  decode_rate / roofline);
    }
    std::fflush(stdout);
    if (options.profile) {
      std::printf("\nprofile, prefill of %d tokens, %d threads:\n%s", options.prompt, threads, prefill_profile.c_str());
      for (size_t d = 0; d < options.depths.size(); ++d)
        std::printf("\nprofile, %d decode steps at depth %d, %d threads:\n%s", options.decode, options.depths[d],
                    threads, decode_profiles[d].c_str());
    }
  }
  return 0;
} catch (const std::exception& error) {
  std::fprintf(stderr, "bench_inference: %s\n", error.what());
  return 1;
}
