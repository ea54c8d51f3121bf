#include "cli/model_session.h"

#include <filesystem>

#include "cli/flag_checks.h"
#include "tokenizer/gguf_vocab.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"
#include "util/thread_pool.h"
#include "util/timer.h"

namespace retort::cli {

void add_model_options(CLI::App& command, ModelOptions& options) {
  command.add_option("MODEL", options.model_path, "Hugging Face checkpoint directory or GGUF file")->required();
  command.add_option("-t,--threads", options.threads, "CPU threads (default: all)")
      ->check(integer_at_least(0, "0 = all hardware threads"));
  command.add_option("-c,--ctx", options.context, "Context length in tokens (KV cache size)")
      ->check(integer_at_least(1))
      ->capture_default_str();
  command.add_option("--kv-type", options.kv_type,
                     "KV cache element type: f16 (half the memory and the bytes read per token), f32 (exact) or q8 (int8 "
                     "with a scale per head row: a quarter of f32)")
      ->capture_default_str();
  command.add_option("--act-type", options.act_type,
                     "Activations meeting bf16 weights: bf16 (vdpbf16ps on CPUs with AVX512-BF16, twice the "
                     "multiply-adds per instruction, as llama.cpp) or f32 (exact)")
      ->capture_default_str();
  command.add_flag("--mmap", options.mmap,
                   "Use the weights in place from the page cache (less memory; slower decode than the default of "
                   "loading them into huge pages)");
}

void add_chat_display_options(CLI::App& command, ChatDisplayOptions& options) {
  command.add_option("--system", options.system, "System message");
  command.add_option("--template", options.template_name, "Chat template: deepseek-r1, deepseek-r1-legacy, chatml, llama3");
  command.add_flag("--hide-think", options.hide_think, "Do not show the <think> reasoning");
  command.add_flag("-q,--quiet", options.quiet, "Do not print the speed");
}

void add_sampling_options(CLI::App& command, GenerationOptions& options) {
  SamplingParams& s = options.sampling;
  command.add_option("-n,--max-tokens", options.max_tokens, "Most tokens to generate")->capture_default_str();
  command.add_option("--temperature,--temp", s.temperature, "Sampling temperature; 0 = greedy")
      ->check(number_in(0, 2, "0 = greedy"))
      ->capture_default_str();
  command.add_option("--top-p", s.top_p, "Nucleus sampling mass; 1 = off")->capture_default_str();
  command.add_option("--top-k", s.top_k, "Keep the k most likely tokens; 0 = off")->capture_default_str();
  command.add_option("--min-p", s.min_p, "Drop tokens below min_p × the top probability")->capture_default_str();
  command.add_option("--repeat-penalty", s.repetition_penalty, "Repetition penalty (HF); 1 = off");
  command.add_option("--frequency-penalty", s.frequency_penalty, "Frequency penalty (OpenAI)");
  command.add_option("--presence-penalty", s.presence_penalty, "Presence penalty (OpenAI)");
  command.add_option("--seed", s.seed, "Random seed (same seed and settings give the same tokens)");
  command.add_option("--stop", options.stop_strings, "Stop when this text appears (repeatable)");
}

void add_draft_options(CLI::App& command, DraftOptions& options) {
  command.add_option("--draft", options.model_path,
                     "Draft model for speculative decoding (HF directory or GGUF sharing the model's tokenizer, "
                     "e.g. a distilled student): it proposes tokens the model checks in one forward");
  command.add_option("--draft-tokens", options.tokens, "Tokens the draft proposes per model forward")
      ->check(CLI::Range(1, 32))
      ->capture_default_str();
}

const Tokenizer& ModelSession::require_tokenizer() const {
  require(tokenizer != nullptr, ErrorKind::NotFound,
          "'{}' has no tokenizer.json; copy the checkpoint's tokenizer files into it", model->path);
  return *tokenizer;
}

ModelSession open_model_session(const ModelOptions& options, bool need_tokenizer) {
  apply_process_settings(options);
  return load_model_session(options, need_tokenizer);
}

void apply_process_settings(const ModelOptions& options) {
  set_thread_count(options.threads);
  set_default_map_mode(options.mmap ? MapMode::Map : MapMode::LoadHugePages);
}

ModelSession load_model_session(const ModelOptions& options, bool need_tokenizer) {
  ModelSession session;
  Timer timer;
  session.backend = std::make_unique<CpuBackend>(activation_precision(options.act_type));
  session.model = load_model(options.model_path, *session.backend);
  const auto tokenizer_path = std::filesystem::path(options.model_path) / "tokenizer.json";
  if (session.model->gguf) {
    session.tokenizer = tokenizer_from_gguf(*session.model->gguf);
  } else if (std::filesystem::exists(tokenizer_path)) {
    session.tokenizer = Tokenizer::load(tokenizer_path.string());
  } else if (need_tokenizer) {
    session.require_tokenizer();
  }
  const int64_t context = std::min(options.context, session.model->config.max_positions);
  session.cache = std::make_unique<KvCache>(session.model->config, context, KvCache::kDefaultBlockSize,
                                            kv_cache_type(options.kv_type));
  session.load_seconds = timer.seconds();
  spdlog::debug("loaded {} in {:.2f}s on {} ({} threads), context {} tokens, KV cache {:.1f} MiB of {}",
                options.model_path, session.load_seconds, session.backend->name(), thread_pool().size(), context,
                session.cache->bytes() / 1048576.0, options.kv_type);
  return session;
}

void open_draft(ModelSession& session, const DraftOptions& draft, const ModelOptions& options, int64_t kv_tokens) {
  if (draft.model_path.empty()) return;
  session.draft_model = load_model(draft.model_path, *session.backend);
  std::unique_ptr<Tokenizer> draft_tokenizer;
  const auto tokenizer_path = std::filesystem::path(draft.model_path) / "tokenizer.json";
  if (session.draft_model->gguf) {
    draft_tokenizer = tokenizer_from_gguf(*session.draft_model->gguf);
  } else {
    require(std::filesystem::exists(tokenizer_path), ErrorKind::NotFound,
            "the draft '{}' has no tokenizer.json; copy the checkpoint's tokenizer files into it", draft.model_path);
    draft_tokenizer = Tokenizer::load(tokenizer_path.string());
  }
  check_draft_compatible(session.require_tokenizer(), *draft_tokenizer, session.model->config, session.draft_model->config);
  const int64_t context = std::min(kv_tokens, session.draft_model->config.max_positions);
  session.drafter = std::make_unique<Drafter>(*session.draft_model->transformer, session.model->config.vocab_size,
                                              context, draft.tokens, kv_cache_type(options.kv_type));
  spdlog::debug("draft {}: {} tokens per round, KV cache {:.1f} MiB", draft.model_path, draft.tokens,
                session.drafter->cache().bytes() / 1048576.0);
}

}  // namespace retort::cli
