// `retort run MODEL -p "…"`: one prompt, the reply streamed to stdout, speed on stderr.
#include <cstdio>

#include "cli/commands.h"
#include "cli/model_session.h"
#include "cli/terminal_output.h"
#include "engine/chat_prompt.h"
#include "util/error.h"
#include "util/log.h"

namespace retort::cli {

namespace {

struct RunOptions {
  ModelOptions model;
  DraftOptions draft;
  GenerationOptions generation;
  std::string prompt;
  ChatDisplayOptions chat;
  bool raw = false;
};

void run_prompt(const RunOptions& options) {
  require(!options.prompt.empty(), ErrorKind::InvalidInput, "the prompt is empty; pass text with -p");
  ModelSession session = open_model_session(options.model, true);
  const Tokenizer& tokenizer = session.require_tokenizer();
  open_draft(session, options.draft, options.model, session.cache->capacity_tokens());
  GenerationOptions generation = options.generation;
  generation.drafter = session.drafter.get();
  std::vector<int32_t> tokens;
  bool opens_reasoning = false;
  if (options.raw) {
    tokens = tokenizer.encode(options.prompt, /*add_special=*/true);
  } else {
    std::vector<ChatMessage> messages;
    if (!options.chat.system.empty()) messages.push_back({"system", options.chat.system});
    messages.push_back({"user", options.prompt});
    ChatPrompt prompt = build_chat_prompt(tokenizer, resolve_chat_template(tokenizer, options.chat.template_name), messages);
    tokens = std::move(prompt.tokens);
    opens_reasoning = prompt.opens_reasoning;
  }
  StreamPrinter printer(options.chat.hide_think ? ReasoningDisplay::Hide : ReasoningDisplay::Dim, opens_reasoning);
  CachedSequence sequence;
  GenerationStats stats = generate(session.transformer(), *session.cache, sequence, tokenizer, tokens,
                                   generation, [&](std::string_view text) { printer.print(text); });
  printer.finish();
  std::printf("\n");
  std::fflush(stdout);  // the text before the stats line on stderr, also when stdout is a pipe
  if (stats.context_full) spdlog::warn("stopped: the context ({} tokens) is full", session.cache->capacity_tokens());
  if (!options.chat.quiet) std::fprintf(stderr, "%s\n", format_speed(stats, session.model->transformer->weights().matrix_bytes).c_str());
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  auto* command = app.add_subcommand("run", "Generate a reply to one prompt, streamed to stdout");
  options->model.kv_type = "f16";  // llama.cpp's default too; --kv-type f32 for exact
  options->model.act_type = "bf16";  // llama.cpp does the same for bf16 files; --act-type f32 for exact
  add_model_options(*command, options->model);
  add_sampling_options(*command, options->generation);
  add_draft_options(*command, options->draft);
  add_chat_display_options(*command, options->chat);
  command->add_option("-p,--prompt", options->prompt, "The prompt")->required();
  command->add_flag("--raw", options->raw, "Continue the text as is, without the chat template");
  command->callback([options] { run_prompt(*options); });
}

}  // namespace retort::cli
