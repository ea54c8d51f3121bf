#pragma once
// What run, chat and logits share: the flags that pick threads and context, loading the model
// with its tokenizer onto the CPU backend, and the sampling flags.
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/generation.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "tokenizer/tokenizer.h"

namespace retort::cli {

struct ModelOptions {
  std::string model_path;
  int threads = 0;         // 0: all hardware threads
  int64_t context = 4096;  // KV cache positions (capped by the model's max positions)
  bool mmap = false;       // view the weights in the page cache instead of loading them
  // The KV cache's element type: f32 by default where results are compared against other engines
  // (logits, eval); run, chat and serve set f16 before adding the flag.
  std::string kv_type = "f32";
  // What activations meeting bf16 weights are rounded to (ActivationPrecision): f32 (exact) by
  // default; run, chat and serve set bf16, as they do f16 for the KV cache.
  std::string act_type = "f32";
};

void add_model_options(CLI::App& command, ModelOptions& options);

// How run and chat build the prompt and show the reply.
struct ChatDisplayOptions {
  std::string system;         // system message
  std::string template_name;  // empty: the one tokenizer_config.json carries
  bool hide_think = false;
  bool quiet = false;         // no speed line
};
void add_chat_display_options(CLI::App& command, ChatDisplayOptions& options);
void add_sampling_options(CLI::App& command, GenerationOptions& options);

struct ModelSession {
  std::unique_ptr<CpuBackend> backend;
  std::unique_ptr<LoadedModel> model;
  std::unique_ptr<Tokenizer> tokenizer;  // null when the model directory has no tokenizer.json
  std::unique_ptr<KvCache> cache;
  double load_seconds = 0;

  Transformer& transformer() { return *model->transformer; }
  const Tokenizer& require_tokenizer() const;
};

ModelSession open_model_session(const ModelOptions& options, bool need_tokenizer);

}  // namespace retort::cli
