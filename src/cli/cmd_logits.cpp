// `retort logits MODEL --tokens FILE --out FILE.f32 [--generate N]`: evaluates the token ids in
// FILE as one prompt, writes every position's logits (little-endian f32, [T × vocab_size]) and with
// --generate prints N greedy continuation ids. How fixtures are compared from outside.
#include <cstdio>
#include <sstream>

#include "cli/commands.h"
#include "cli/flag_checks.h"
#include "cli/model_session.h"
#include "engine/sampler.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "util/output_path.h"

namespace retort::cli {

namespace {

struct LogitsOptions {
  ModelOptions model;
  std::string tokens_path;
  std::string out_path;
  int generate = 0;
};

std::vector<int32_t> read_token_file(const std::string& path) {
  std::istringstream text(read_text_file(path));
  std::vector<int32_t> ids;
  std::string word;
  while (text >> word) {
    char* end = nullptr;
    errno = 0;
    long long value = std::strtoll(word.c_str(), &end, 10);
    require(*end == '\0' && errno == 0 && value >= 0 && value <= INT32_MAX, ErrorKind::InvalidInput,
            "{}: '{}' is not a token id; expected whitespace-separated non-negative integers", path, word);
    ids.push_back(static_cast<int32_t>(value));
  }
  require(!ids.empty(), ErrorKind::InvalidInput, "{}: no token ids found; the prompt is empty", path);
  return ids;
}

void run_logits(const LogitsOptions& options) {
  check_output_file(options.out_path, {options.model.model_path, options.tokens_path}, "--out");
  const std::vector<int32_t> prompt = read_token_file(options.tokens_path);
  ModelOptions model_options = options.model;
  model_options.context = std::max<int64_t>(model_options.context,
                                            static_cast<int64_t>(prompt.size()) + options.generate);
  ModelSession session = open_model_session(model_options, false);
  // Checked before any work: the last generated id is not fed back, so N ids need N - 1 positions.
  const int64_t needed = static_cast<int64_t>(prompt.size()) + std::max(options.generate - 1, 0);
  const int64_t positions = std::min(session.model->config.max_positions, session.cache->capacity_tokens());
  const int64_t room = positions - static_cast<int64_t>(prompt.size());
  require(needed <= positions, ErrorKind::OutOfRange,
          "the prompt ({} tokens) and --generate {} need {} positions, but this model holds at most {}; {}",
          prompt.size(), options.generate, needed, positions,
          room >= 0 ? fmt::format("lower --generate to at most {}", room + 1) : std::string("shorten the prompt"));
  CachedSequence sequence;
  std::vector<float> logits;
  prefill(session.transformer(), *session.cache, sequence, prompt, LogitsWanted::All, 512, logits);

  AtomicFile out(options.out_path);
  out.write(logits.data(), logits.size() * sizeof(float));  // x86-64 is little-endian
  out.commit();

  if (options.generate > 0) {
    const int64_t vocab = session.model->config.vocab_size;
    std::vector<float> row(logits.end() - vocab, logits.end());
    std::vector<int32_t> generated;
    for (int i = 0; i < options.generate; ++i) {
      const int32_t token = argmax(row);
      generated.push_back(token);
      if (i + 1 < options.generate) {
        prefill(session.transformer(), *session.cache, sequence, std::span(&token, 1), LogitsWanted::Last, 1, row);
      }
    }
    for (size_t i = 0; i < generated.size(); ++i) std::printf(i ? " %d" : "%d", generated[i]);
    std::printf("\n");
  }
}

}  // namespace

void add_logits_command(CLI::App& app) {
  auto options = std::make_shared<LogitsOptions>();
  auto* command = app.add_subcommand("logits", "Write a prompt's logits at every position (and greedy ids)");
  add_model_options(*command, options->model);
  command->add_option("--tokens", options->tokens_path, "File of whitespace-separated token ids")->required();
  command->add_option("--out", options->out_path, "Output file: little-endian f32 [T × vocab_size]")->required();
  command->add_option("--generate", options->generate, "Also print N greedy continuation ids")
      ->check(integer_at_least(0));
  command->callback([options] { run_logits(*options); });
}

}  // namespace retort::cli
