// `retort eval perplexity MODEL --file TEXT [--ctx 512] [--chunks N]` and
// `retort eval precision MODEL --types q8_0,q4_0,q4_k --file TEXT [--out report.json]`.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/flag_checks.h"
#include "cli/model_session.h"
#include "eval/perplexity.h"
#include "eval/precision.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"
#include "util/text.h"
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

struct PrecisionCommand {
  ModelOptions model;
  std::string file;
  std::string types = "q8_0,q4_0,q4_k";
  std::string work_dir = "precision-report";
  std::string out;  // default: WORK_DIR/precision.json
  int64_t chunks = 8;
  int64_t prompt_tokens = 128;
  int64_t decode_tokens = 32;
};

std::vector<QuantRecipe> parse_recipe_list(const std::string& list) {
  std::vector<QuantRecipe> recipes;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string name{trim_ascii_whitespace(std::string_view(list).substr(start, comma - start))};
    if (!name.empty()) recipes.push_back(parse_quant_recipe(name));
    start = comma + 1;
  }
  return recipes;
}

void run_precision(PrecisionCommand& options) {
  PrecisionOptions precision;
  precision.reference_path = options.model.model_path;
  precision.recipes = parse_recipe_list(options.types);
  precision.work_dir = options.work_dir;
  precision.perplexity.context = options.model.context;
  precision.perplexity.max_chunks = options.chunks;
  precision.prompt_tokens = options.prompt_tokens;
  precision.decode_tokens = options.decode_tokens;
  std::vector<int32_t> tokens;
  {  // the reference's tokenizer cuts the text once for every model
    ModelSession session = open_model_session(options.model, true);
    const Tokenizer& tokenizer = session.require_tokenizer();
    tokens = tokenizer.encode(read_text_file(options.file), /*add_special=*/false);
    if (!tokenizer.encode("", true).empty()) precision.perplexity.bos_id = tokenizer.bos_id();
  }
  const bool terminal = stderr_is_terminal();
  CpuBackend backend;
  PrecisionReport report = measure_precision(precision, tokens, backend, [&](const std::string& stage) {
    std::fprintf(stderr, terminal ? "\r\x1b[K%s" : "%s\n", stage.c_str());
  });
  if (terminal) std::fputc('\n', stderr);
  const std::string markdown = precision_markdown(report);
  std::fputs(markdown.c_str(), stdout);
  const std::string json_path = options.out.empty() ? options.work_dir + "/precision.json" : options.out;
  write_file_atomically(json_path, precision_json(report));
  write_file_atomically(options.work_dir + "/precision.md", markdown);
  spdlog::info("wrote {} and {}/precision.md", json_path, options.work_dir);
}

void add_precision_command(CLI::App& eval) {
  auto options = std::make_shared<PrecisionCommand>();
  auto* precision = eval.add_subcommand("precision", "What each weight type costs (perplexity, KL, top-1 vs the "
                                                     "reference) and buys (size, prefill/decode tok/s)");
  options->model.context = 512;  // --ctx is the window length here
  add_model_options(*precision, options->model);
  precision->add_option("--file", options->file, "UTF-8 text, e.g. ../shared/data/wikitext-2-raw/wiki.test.raw")->required();
  precision->add_option("--types", options->types, "Comma-separated weight types to compare: f16,bf16,q8_0,q4_0,q4_k")
      ->capture_default_str();
  precision->add_option("--chunks", options->chunks, "Windows of text each model evaluates")
      ->check(integer_at_least(0, "0 = all"))
      ->capture_default_str();
  precision->add_option("--work-dir", options->work_dir, "Where the quantized GGUF files and the report go")
      ->capture_default_str();
  precision->add_option("--out", options->out, "JSON report path (default WORK_DIR/precision.json)");
  precision->add_option("--prompt-tokens", options->prompt_tokens, "Prefill length for the speed columns")
      ->capture_default_str();
  precision->add_option("--decode-tokens", options->decode_tokens, "Greedy decode steps for the speed columns")
      ->capture_default_str();
  precision->callback([options] { run_precision(*options); });
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* eval = app.add_subcommand("eval", "Measure a model: perplexity, the precision report, BLEU/chrF");
  eval->require_subcommand(1);
  auto options = std::make_shared<PerplexityCommand>();
  auto* perplexity = eval->add_subcommand("perplexity", "Sliding-window perplexity on a text file");
  options->model.context = 512;  // --ctx is the window length here
  add_model_options(*perplexity, options->model);
  perplexity->add_option("--file", options->file, "UTF-8 text, e.g. ../shared/data/wikitext-2-raw/wiki.test.raw")->required();
  perplexity->add_option("--chunks", options->chunks, "Evaluate at most N windows (0: all)")
      ->check(integer_at_least(0, "0 = all"));
  perplexity->add_flag("--json", options->json, "Print the result as JSON");
  perplexity->callback([options] { run_perplexity(*options); });
  add_precision_command(*eval);
  add_bleu_command(*eval);
}

}  // namespace retort::cli
