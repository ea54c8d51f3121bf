#pragma once
// What run, chat and logits share: the flags that pick threads and context, loading the model
// with its tokenizer onto the CPU backend, and the sampling flags.
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/generation.h"
#include "engine/speculative.h"
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

// Speculative decoding (run, chat, serve): a draft model sharing the target's tokenizer.
struct DraftOptions {
  std::string model_path;  // empty: no draft
  int tokens = 4;          // proposed per target forward
};
void add_draft_options(CLI::App& command, DraftOptions& options);

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
  std::unique_ptr<LoadedModel> draft_model;  // with --draft
  std::unique_ptr<Drafter> drafter;
  double load_seconds = 0;

  Transformer& transformer() { return *model->transformer; }
  const Tokenizer& require_tokenizer() const;
};

// apply_process_settings, then load_model_session.
ModelSession open_model_session(const ModelOptions& options, bool need_tokenizer);
// What the options set for the whole process: the kernels' thread count and how weight files are
// read. It replaces the thread pool, so it must not run while a scheduler is stepping a model.
void apply_process_settings(const ModelOptions& options);
// The model, tokenizer and a KV cache of options.context positions, under the process settings as
// they are: safe while other models are serving (retort serve --max-memory loads models on demand).
ModelSession load_model_session(const ModelOptions& options, bool need_tokenizer);
// Loads the draft onto the session's backend, checks that it shares the target's tokenizer and
// sets session.drafter (draft KV cache of `kv_tokens` positions); nothing without a draft path.
void open_draft(ModelSession& session, const DraftOptions& draft, const ModelOptions& options, int64_t kv_tokens);

}  // namespace retort::cli
