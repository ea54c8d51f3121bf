// `retort eval perplexity MODEL --file TEXT [--ctx 512] [--chunks N]`.
#include <cstdio>

#include "cli/commands.h"
#include "cli/model_session.h"
#include "eval/perplexity.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"
#include "util/timer.h"

namespace retort::cli {

namespace {

struct PerplexityCommand {
  ModelOptions model;
  std::string file;
  int64_t chunks = 0;
  bool json = false;
};

void run_perplexity(PerplexityCommand& options) {
  ModelSession session = open_model_session(options.model, true);
  const Tokenizer& tokenizer = session.require_tokenizer();
  const std::string text = read_text_file(options.file);
  Timer timer;
  const std::vector<int32_t> tokens = tokenizer.encode(text, /*add_special=*/false);
  spdlog::info("{}: {} bytes, {} tokens (tokenized in {:.1f}s)", options.file, text.size(), tokens.size(), timer.seconds());
  PerplexityOptions ppl;
  ppl.context = options.model.context;
  ppl.max_chunks = options.chunks;
  // Models whose tokenizer adds BOS were trained with it at the start of every sequence.
  if (!tokenizer.encode("", true).empty()) ppl.bos_id = tokenizer.bos_id();
  const bool terminal = stderr_is_terminal();
  timer.reset();
  PerplexityResult result = measure_perplexity(session.transformer(), tokens, ppl, [&](int64_t done, int64_t total, double running) {
    std::fprintf(stderr, terminal ? "\r\x1b[K[%lld/%lld] ppl %.4f" : "[%lld/%lld] ppl %.4f\n", static_cast<long long>(done),
                 static_cast<long long>(total), running);
  });
  if (terminal) std::fputc('\n', stderr);
  if (options.json) {
    std::printf("{\"perplexity\": %.6f, \"standard_error\": %.6f, \"scored_tokens\": %lld, \"chunks\": %lld, \"ctx\": %lld}\n",
                result.perplexity, result.standard_error, static_cast<long long>(result.scored_tokens),
                static_cast<long long>(result.chunks), static_cast<long long>(options.model.context));
  } else {
    std::printf("perplexity %.4f ± %.4f over %lld tokens in %lld windows of %lld (%.1f tok/s)\n", result.perplexity,
                result.standard_error, static_cast<long long>(result.scored_tokens), static_cast<long long>(result.chunks),
                static_cast<long long>(options.model.context), result.chunks * options.model.context / timer.seconds());
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* eval = app.add_subcommand("eval", "Measure a model: perplexity");
  eval->require_subcommand(1);
  auto options = std::make_shared<PerplexityCommand>();
  auto* perplexity = eval->add_subcommand("perplexity", "Sliding-window perplexity on a text file");
  options->model.context = 512;  // --ctx is the window length here
  add_model_options(*perplexity, options->model);
  perplexity->add_option("--file", options->file, "UTF-8 text, e.g. ../shared/data/wikitext-2-raw/wiki.test.raw")->required();
  perplexity->add_option("--chunks", options->chunks, "Evaluate at most N windows (0: all)");
  perplexity->add_flag("--json", options->json, "Print the result as JSON");
  perplexity->callback([options] { run_perplexity(*options); });
}

}  // namespace retort::cli
