// Decode and prefill speed of a model on the CPU backend, with a memory-bandwidth probe run in the
// same process so decode can be reported as a fraction of the bandwidth roofline
// (bytes of weights read per token ÷ measured bandwidth).
//
//   bench_inference MODEL_DIR [--threads 1,2] [--prompt 128] [--decode 32] [--batch 1]
#include <sys/mman.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
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

struct Options {
  std::string model;
  std::vector<int> threads{1, 2};
  int prompt = 128;
  int decode = 32;
};

Options parse(int argc, char** argv) {
  Options o;
  o.model = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string key = argv[i], value = argv[i + 1];
    if (key == "--threads") {
      o.threads.clear();
      for (size_t at = 0; at < value.size();) {
        size_t comma = value.find(',', at);
        o.threads.push_back(std::stoi(value.substr(at, comma - at)));
        at = comma == std::string::npos ? value.size() : comma + 1;
      }
    } else if (key == "--prompt") {
      o.prompt = std::stoi(value);
    } else if (key == "--decode") {
      o.decode = std::stoi(value);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_inference MODEL_DIR [--threads 1,2] [--prompt N] [--decode N]\n");
    return 2;
  }
  Options options = parse(argc, argv);
  CpuBackend backend;
  Timer load_timer;
  auto model = load_model(options.model, backend);
  const double load_seconds = load_timer.seconds();
  const double weight_gb = model->transformer->weights().matrix_bytes / 1e9;
  std::printf("model %s: %s, %.2f GB of matrices, backend %s, load %.2fs, RSS after load %.0f MiB\n",
              options.model.c_str(), std::string(architecture_name(model->config.arch)).c_str(), weight_gb,
              backend.name().c_str(), load_seconds, resident_mib());
  std::printf("| threads | bandwidth GB/s | prefill tok/s | TTFT ms | decode tok/s | roofline tok/s | decode / roofline | RSS MiB | KV MiB |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  std::vector<int32_t> prompt(static_cast<size_t>(options.prompt));
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7919 + 13) % 1000 + 10);
  for (int threads : options.threads) {
    const double bandwidth = measure_bandwidth_gbs(threads);
    set_thread_count(threads);
    KvCache cache(model->config, options.prompt + options.decode + 16);
    std::vector<float> logits;
    // Warm-up pass touches every weight page once (the cold-start cost is reported separately).
    {
      KvSequence warm;
      cache.reserve(warm, 8);
      SequenceChunk chunk{&warm, std::span(prompt).first(8), LogitsWanted::Last};
      model->transformer->forward({&chunk, 1}, cache, logits);
      cache.release(warm);
    }
    KvSequence seq;
    cache.reserve(seq, options.prompt + options.decode);
    Timer timer;
    SequenceChunk chunk{&seq, std::span(prompt), LogitsWanted::Last};
    model->transformer->forward({&chunk, 1}, cache, logits);
    const double prefill_seconds = timer.seconds();
    timer.reset();
    for (int i = 0; i < options.decode; ++i) {
      int32_t token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      SequenceChunk step{&seq, std::span(&token, 1), LogitsWanted::Last};
      model->transformer->forward({&step, 1}, cache, logits);
    }
    const double decode_rate = options.decode / timer.seconds();
    const double roofline = bandwidth / weight_gb;
    std::printf("| %d | %.1f | %.1f | %.0f | %.2f | %.2f | %.0f%% | %.0f | %.0f |\n", threads, bandwidth,
                options.prompt / prefill_seconds, prefill_seconds * 1e3, decode_rate, roofline,
                100.0 * decode_rate / roofline, resident_mib(), cache.bytes() / 1048576.0);
    std::fflush(stdout);
  }
  return 0;
}
