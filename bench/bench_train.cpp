// Training throughput: forward + backward + AdamW steps on a ~31 M-parameter Qwen2-shaped model
// (hidden 512, 8 layers, 8 query / 2 KV heads, FFN 1408, vocab 8192, untied head) at batch 4 ×
// sequence 256 by default. Prints one JSON line: tokens/s, ms per step, activation memory and
// peak RSS. bench/run_train_bench.sh runs it at 1 and 2 threads, with and without activation
// checkpointing, and PyTorch on the same model beside it.
//
// --bf16 runs the linear layers' products in bf16 (memory.mixed_precision: bf16). --text FILE
// trains on the file's bytes (token id = byte) in consecutive windows, a new batch every step, so
// the per-step losses ("losses") are a real loss curve; without it every step repeats one random
// batch.
#include <sys/resource.h>

#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "train/optimizer.h"
#include "train/train_model.h"
#include "util/thread_pool.h"

using namespace retort;
using namespace retort::train;

int main(int argc, char** argv) {
  int threads = 1, steps = 5, warmup = 1;
  int64_t batch = 4, seq = 256;
  bool checkpointing = false, bf16 = false;
  double lr = 3e-4;
  std::string text_path;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&] { return i + 1 < argc ? std::atoll(argv[++i]) : 0; };
    if (arg == "--threads") threads = int(value());
    else if (arg == "--steps") steps = int(value());
    else if (arg == "--batch") batch = value();
    else if (arg == "--seq") seq = value();
    else if (arg == "--checkpointing") checkpointing = true;
    else if (arg == "--bf16") bf16 = true;
    else if (arg == "--text" && i + 1 < argc) text_path = argv[++i];
    else if (arg == "--lr" && i + 1 < argc) lr = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_train [--threads N] [--steps N] [--batch B] [--seq T] [--checkpointing] "
                           "[--bf16] [--text FILE] [--lr LR]\n");
      return 2;
    }
  }
  set_thread_count(threads);
  openblas_set_num_threads(1);

  ModelConfig c;
  c.hf_architecture = "Qwen2ForCausalLM";
  c.hidden_size = 512; c.intermediate_size = 1408; c.num_layers = 8; c.num_heads = 8; c.num_kv_heads = 2;
  c.head_dim = 64; c.vocab_size = 8192; c.max_positions = 4096; c.attention_bias = true; c.rms_norm_eps = 1e-6;
  TrainModelOptions options;
  options.activation_checkpointing = checkpointing;
  options.matmul_precision = bf16 ? MatmulPrecision::bf16 : MatmulPrecision::f32;
  TrainModel<float> model(c, batch, seq, options);
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (size_t i = 0; i < model.parameter_count(); ++i) model.params()[i] = normal(rng);
  AdamW optimizer(model.layout(), {lr, 0.9, 0.95, 1e-8, 0.1});
  std::vector<int32_t> inputs(size_t(batch * seq)), targets(inputs.size());
  std::uniform_int_distribution<int32_t> token(0, int32_t(c.vocab_size - 1));
  for (size_t i = 0; i < inputs.size(); ++i) inputs[i] = token(rng);
  for (size_t i = 0; i + 1 < inputs.size(); ++i) targets[i] = inputs[i + 1];
  targets.back() = token(rng);
  std::string text;
  if (!text_path.empty()) {
    std::ifstream in(text_path, std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(in), {});
    if (text.size() < size_t(batch * (seq + 1))) {
      std::fprintf(stderr, "%s: need at least %lld bytes\n", text_path.c_str(), (long long)(batch * (seq + 1)));
      return 2;
    }
  }
  size_t text_pos = 0;
  auto next_text_batch = [&] {  // consecutive windows of seq + 1 bytes, wrapping at the end
    for (int64_t b = 0; b < batch; ++b) {
      if (text_pos + size_t(seq + 1) > text.size()) text_pos = 0;
      for (int64_t t = 0; t < seq; ++t) {
        inputs[size_t(b * seq + t)] = static_cast<unsigned char>(text[text_pos + size_t(t)]);
        targets[size_t(b * seq + t)] = static_cast<unsigned char>(text[text_pos + size_t(t) + 1]);
      }
      text_pos += size_t(seq);
    }
  };
  std::string losses;

  double loss = 0, seconds = 0, forward_s = 0, backward_s = 0;
  auto since = [](auto start) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  for (int s = 0; s < warmup + steps; ++s) {
    if (!text.empty()) next_text_batch();
    const auto start = std::chrono::steady_clock::now();
    model.zero_grad();
    const LossSum l = model.forward(inputs.data(), targets.data());
    const double forward_done = since(start);
    model.backward(1.0 / double(l.targets));
    const double backward_done = since(start);
    clip_grad_norm(model.grads(), model.parameter_count(), 1.0);
    optimizer.step(model.params(), model.grads(), lr);
    const double took = since(start);
    if (s >= warmup) {
      seconds += took;
      forward_s += forward_done;
      backward_s += backward_done - forward_done;
    }
    loss = l.sum / double(l.targets);
    losses += (losses.empty() ? "" : ", ") + std::to_string(loss);
  }
  std::fprintf(stderr, "per step: forward (incl. zeroing grads) %.0f ms, backward %.0f ms, clip + AdamW %.0f ms\n",
               1000 * forward_s / steps, 1000 * backward_s / steps, 1000 * (seconds - forward_s - backward_s) / steps);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("{\"engine\": \"retort\", \"params\": %zu, \"threads\": %d, \"batch\": %lld, \"seq\": %lld, "
              "\"checkpointing\": %s, \"tokens_per_s\": %.1f, \"ms_per_step\": %.1f, \"activation_mib\": %.1f, "
              "\"peak_rss_mib\": %.1f, \"last_loss\": %.4f, \"matmuls\": \"%s\", \"losses\": [%s]}\n",
              model.parameter_count(), threads, (long long)batch, (long long)seq, checkpointing ? "true" : "false",
              double(batch * seq * steps) / seconds, 1000 * seconds / steps, model.activation_bytes() / 1048576.0,
              usage.ru_maxrss / 1024.0, loss, bf16 ? "bf16" : "f32", losses.c_str());
  return 0;
}
