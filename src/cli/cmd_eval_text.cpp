// `retort eval bleu --hyp FILE --ref FILE [--ref FILE …]` scores hypotheses against references, one
// sentence per line; `retort eval bleu MODEL --data FILE.jsonl` first generates each line's
// "prompt" greedily and scores it against its "reference" (or "references"). Corpus BLEU (13a) and
// chrF2 as sacreBLEU prints them (eval/text_metrics.h).
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/flag_checks.h"
#include "cli/model_session.h"
#include "eval/reference_set.h"
#include "eval/text_metrics.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"

namespace retort::cli {

namespace {

struct BleuCommand {
  ModelOptions model;
  std::string hypotheses_file, data_file, save_hypotheses;
  std::vector<std::string> reference_files;
  std::string tokenize = "13a";
  int max_tokens = 256;
  bool json = false;
};

// Greedy one-line replies of the model to each prompt (eval/reference_set.h).
std::vector<std::string> generate_hypotheses(const BleuCommand& options, const std::vector<std::string>& prompts) {
  ModelSession session = open_model_session(options.model, true);
  return eval::greedy_line_replies(session.transformer(), *session.cache, session.require_tokenizer(), prompts,
                                   options.max_tokens, [&](size_t done) {
                                     std::fprintf(stderr, "\r[%zu/%zu] generated", done, prompts.size());
                                     if (done == prompts.size()) std::fputc('\n', stderr);
                                   });
}

void run_bleu(BleuCommand& options) {
  std::vector<std::string> hypotheses;
  std::vector<std::vector<std::string>> references;
  if (!options.data_file.empty()) {
    require(!options.model.model_path.empty() && options.hypotheses_file.empty() && options.reference_files.empty(),
            ErrorKind::InvalidInput, "--data needs MODEL (to generate the hypotheses) and no --hyp or --ref");
    eval::PromptSet set = eval::read_prompt_set(options.data_file);
    references = std::move(set.references);
    hypotheses = generate_hypotheses(options, set.prompts);
    if (!options.save_hypotheses.empty()) {
      std::string text;
      for (const auto& h : hypotheses) text += h + "\n";
      write_file_atomically(options.save_hypotheses, text);
    }
  } else {
    require(!options.hypotheses_file.empty() && !options.reference_files.empty(), ErrorKind::InvalidInput,
            "give --hyp FILE and --ref FILE (one sentence per line), or MODEL --data FILE.jsonl");
    hypotheses = eval::read_lines(options.hypotheses_file);
    for (const auto& file : options.reference_files) references.push_back(eval::read_lines(file));
  }
  require(options.tokenize == "13a" || options.tokenize == "none", ErrorKind::InvalidInput,
          "--tokenize '{}': expected 13a (sacreBLEU's default) or none", options.tokenize);
  const eval::BleuScore bleu = eval::corpus_bleu(hypotheses, references, options.tokenize == "13a");
  const double chrf = eval::corpus_chrf(hypotheses, references);
  if (options.json) {
    nlohmann::json out{{"bleu", bleu.score},        {"chrf", chrf},
                       {"precisions", bleu.precisions}, {"brevity_penalty", bleu.brevity_penalty},
                       {"hyp_len", bleu.hypothesis_length}, {"ref_len", bleu.reference_length},
                       {"sentences", hypotheses.size()}, {"tokenize", options.tokenize}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("%s\nchrF2 = %.2f\n", eval::describe(bleu).c_str(), chrf);
  }
}

}  // namespace

void add_bleu_command(CLI::App& eval) {
  auto options = std::make_shared<BleuCommand>();
  auto* bleu = eval.add_subcommand("bleu", "Corpus BLEU and chrF (as sacreBLEU computes them) of hypotheses "
                                           "against references, or of a model's greedy replies to prompts");
  add_model_options(*bleu, options->model);
  bleu->get_option("MODEL")->required(false);
  bleu->add_option("--hyp", options->hypotheses_file, "Hypotheses, one sentence per line");
  bleu->add_option("--ref", options->reference_files, "References, line by line with --hyp (repeat for several)");
  bleu->add_option("--data", options->data_file,
                   "JSONL of {\"prompt\": ..., \"reference\": ...} (or \"references\": [...]) for MODEL to answer");
  bleu->add_option("--max-tokens", options->max_tokens, "Most tokens per generated reply (it ends at a newline)")
      ->check(integer_at_least(1))
      ->capture_default_str();
  bleu->add_option("--save-hyp", options->save_hypotheses, "Write the generated hypotheses here, one per line");
  bleu->add_option("--tokenize", options->tokenize, "13a (sacreBLEU's default) or none")->capture_default_str();
  bleu->add_flag("--json", options->json, "Print the scores as JSON");
  bleu->callback([options] { run_bleu(*options); });
}

}  // namespace retort::cli
