// `retort distill CONFIG.yaml [--resume]`: online knowledge distillation (src/train/distill.cpp).
// `retort distill generate CONFIG.yaml`: sequence-level KD data — the teacher writes a response to
// each prompt of generate.prompts into generate.output (JSONL that `retort train`/`distill` read
// with data.format: jsonl), resumably: the prompts already answered there are skipped.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/model_session.h"
#include "dist/data_parallel.h"
#include "engine/chat_prompt.h"
#include "train/distill.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"

namespace retort::cli {

namespace {

namespace fs = std::filesystem;

std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream in(path);
  require(in.good(), ErrorKind::NotFound, "generate.prompts: cannot open '{}'", path);
  std::vector<std::string> prompts;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorKind::InvalidInput, "{}:{}: not valid JSON ({})", path, number, e.what());
    }
    require(row.is_object() && row.contains("prompt") && row["prompt"].is_string(), ErrorKind::InvalidInput,
            "{}:{}: expected an object with a string field \"prompt\"", path, number);
    prompts.push_back(row["prompt"].get<std::string>());
  }
  return prompts;
}

// How many prompts `output` already answers. Responses are written in prompt order, so row k must
// answer prompt k (a prompt file with repeated prompts then still gets one response per line); an
// output that does not match is refused rather than mixed. A last line cut short by a killed run is
// dropped (the file is rewritten without it) so that appending continues on a clean line.
size_t answered_prompts(const std::string& output, const std::vector<std::string>& prompts) {
  std::ifstream in(output);
  if (!in.good()) return 0;
  std::string line, kept;
  size_t answered = 0;
  bool dropped = false;
  while (std::getline(in, line)) {
    std::string prompt;
    try {
      const auto row = nlohmann::json::parse(line);
      prompt = row.contains("prompt") ? row["prompt"].get<std::string>()
                                      : row["messages"][0]["content"].get<std::string>();
    } catch (const nlohmann::json::exception&) {
      dropped = true;
      continue;
    }
    require(!dropped, ErrorKind::InvalidInput, "{}: an unreadable line before line {}; delete the file to start over",
            output, answered + 2);
    require(answered < prompts.size() && prompt == prompts[answered], ErrorKind::InvalidInput,
            "{}:{}: answers a prompt other than prompt {} of generate.prompts; was the prompt file changed? Delete "
            "the output to start over", output, answered + 1, answered + 1);
    ++answered;
    kept += line + "\n";
  }
  if (dropped) {
    spdlog::warn("{}: dropping an incomplete line left by an interrupted run", output);
    write_file_atomically(output, kept);
  }
  return answered;
}

void generate_responses(const std::string& config_path) {
  const train::DistillConfig config = train::load_distill_config(config_path);
  const train::GenerateConfig& g = config.generate;
  require(!g.prompts.empty() && !g.output.empty(), ErrorKind::InvalidInput,
          "{}: distill generate needs generate.prompts (JSONL with \"prompt\") and generate.output", config_path);
  const std::vector<std::string> prompts = read_prompts(g.prompts);
  const size_t done = answered_prompts(g.output, prompts);
  ModelOptions model_options;
  model_options.model_path = config.teacher_model;
  model_options.threads = config.train.threads;
  model_options.context = std::min<int64_t>(4096, 2 * (g.max_tokens + 1024));
  ModelSession session = open_model_session(model_options, true);
  const Tokenizer& tokenizer = session.require_tokenizer();
  GenerationOptions options;
  options.sampling.temperature = float(g.temperature);
  options.sampling.top_p = float(g.top_p);
  options.sampling.top_k = int(g.top_k);
  options.max_tokens = int(g.max_tokens);
  options.sampling.validate();

  if (!fs::path(g.output).parent_path().empty()) fs::create_directories(fs::path(g.output).parent_path());
  std::ofstream out(g.output, std::ios::app);
  int64_t written = 0;
  for (size_t i = done; i < prompts.size(); ++i) {
    const std::string& prompt = prompts[i];
    std::vector<int32_t> tokens;
    if (g.chat_template) {
      tokens = build_chat_prompt(tokenizer, resolve_chat_template(tokenizer, ""), {{"user", prompt}}).tokens;
    } else {
      tokens = tokenizer.encode(prompt, /*add_special=*/true);
    }
    // Each prompt gets its own seed, so a resumed run writes what an uninterrupted one would have.
    options.sampling.seed = g.seed + i;
    std::string response;
    CachedSequence sequence;
    generate(session.transformer(), *session.cache, sequence, tokenizer, tokens, options,
             [&](std::string_view text) { response += text; });
    session.cache->release(sequence.kv);
    const nlohmann::json row =
        g.chat_template ? nlohmann::json{{"messages", {{{"role", "user"}, {"content", prompt}},
                                                       {{"role", "assistant"}, {"content", response}}}}}
                        : nlohmann::json{{"prompt", prompt}, {"response", response}};
    out << row.dump() << std::endl;  // flushed per line: a kill loses at most the prompt in progress
    ++written;
    spdlog::info("[{}/{}] {} tokens of response", i + 1, prompts.size(), tokenizer.encode(response).size());
  }
  spdlog::info("{}: {} responses written, {} prompts already answered", g.output, written, done);
}

}  // namespace

void add_distill_command(CLI::App& app) {
  struct Options {
    std::string config_path;
    bool resume = false;
    std::string generate_config;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("distill", "Distill a teacher into a student from a YAML config");
  command->add_option("config", options->config_path, "Distillation config (YAML; see configs/distill/)");
  command->add_flag("--resume", options->resume, "Continue from the newest checkpoint in checkpointing.dir");
  auto* generate = command->add_subcommand(
      "generate", "Sequence-level KD: the teacher answers generate.prompts into generate.output (resumable)");
  generate->add_option("config", options->generate_config, "Distillation config with a generate section")->required();
  generate->callback([options] { generate_responses(options->generate_config); });
  command->callback([options, command] {
    if (command->got_subcommand("generate")) return;
    require(!options->config_path.empty(), ErrorKind::InvalidInput,
            "retort distill needs a config: retort distill CONFIG.yaml (or retort distill generate CONFIG.yaml)");
    std::vector<train::ConfigEntry> entries;
    const train::DistillConfig config = train::load_distill_config(options->config_path, &entries);
    const train::DistillRunResult result =
        dist::run_on_ranks(config.train, entries, options->resume, [&](train::RankGroup* ranks) {
          return train::run_distillation(config, entries, {options->resume, ranks});
        });
    spdlog::info("distilled {} steps, final loss {:.4f}; student validation loss {:.4f} (perplexity {:.2f}), teacher "
                 "{:.4f} ({:.2f}); model in {}", result.steps, result.final_loss, result.val_loss,
                 std::exp(result.val_loss), result.teacher_val_loss, std::exp(result.teacher_val_loss),
                 result.last_checkpoint);
  });
}

}  // namespace retort::cli
