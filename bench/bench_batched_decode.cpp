// What continuous batching buys: time of one decode step of the transformer for 1, 4, 16 and 32
// sequences stepped together (each at its own position, as the server's scheduler batches them),
// and the aggregate decode tokens/s relative to a single sequence. The weights are read once per
// step whatever the batch, so the ratio shows how far a step stays memory-bound.
//
//   bench_batched_decode MODEL [--threads N] [--batches 1,4,16,32] [--steps 8] [--context 64] [--kv-type f16|f32]
//                        [--act-type bf16|f32]   (both default to what `retort serve` uses: f16, bf16)
//
// The step is timed by eval/timed_forward (what `retort bench MODEL --batch ...` runs); each
// sequence's context is random keys and values, as in bench_inference's --depth.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "eval/timed_forward.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "util/thread_pool.h"

using namespace retort;

namespace {

std::vector<int> parse_list(const char* text) {
  std::vector<int> values;
  for (const char* p = text; *p != '\0';) {
    values.push_back(std::atoi(p));
    while (*p != '\0' && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return values;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [--threads N] [--batches 1,4,16,32] [--steps 8] [--context 64]\n", argv[0]);
    return 1;
  }
  std::string path = argv[1];
  int threads = 0, steps = 8;
  int64_t context = 64;  // positions already in each sequence when decoding starts
  std::vector<int> batches{1, 4, 16, 32};
  DType kv_type = DType::F16;
  ActivationPrecision act_type = ActivationPrecision::Bf16;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--batches")) batches = parse_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--context")) context = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--kv-type")) kv_type = kv_cache_type(argv[i + 1]);
    if (!std::strcmp(argv[i], "--act-type")) act_type = activation_precision(argv[i + 1]);
  }
  set_thread_count(threads);
  CpuBackend backend(act_type);
  auto model = load_model(path, backend);
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  KvCache cache(model->config, batched_decode_positions(max_batch, context, steps, KvCache::kDefaultBlockSize),
                KvCache::kDefaultBlockSize, kv_type);
  std::printf("%s, %d threads, %lld positions of context per sequence\n", path.c_str(), thread_pool().size(),
              static_cast<long long>(context));
  std::printf("batch | ms per step | tok/s aggregate | x single\n");
  double single = 0;
  for (int batch : batches) {
    const double seconds = time_batched_decode_step(*model->transformer, cache, batch, context, steps);
    const double rate = batch / seconds;
    if (batch == 1) single = rate;
    std::printf("%5d | %11.1f | %15.1f | %8.2f\n", batch, seconds * 1e3, rate, single > 0 ? rate / single : 0.0);
    std::printf("RESULT batch=%d step_ms=%.3f aggregate_tps=%.3f\n", batch, seconds * 1e3, rate);
  }
  return 0;
} catch (const std::exception& error) {
  std::fprintf(stderr, "bench_batched_decode: %s\n", error.what());
  return 1;
}
