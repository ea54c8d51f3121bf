// `retort chat MODEL`: an interactive multi-turn chat through the model's chat template. The
// reasoning is shown dimmed (or hidden), /commands change settings, Ctrl-C stops a reply.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/model_session.h"
#include "cli/terminal_output.h"
#include "engine/chat_prompt.h"
#include "util/error.h"
#include "util/input_limits.h"
#include "util/log.h"

namespace retort::cli {

namespace {

std::atomic<bool> g_interrupted{false};
void on_interrupt(int) { g_interrupted.store(true); }

struct ChatOptions {
  ModelOptions model;
  DraftOptions draft;
  GenerationOptions generation;
  ChatDisplayOptions chat;
};

const char* kHelp =
    "commands: /reset (forget the conversation), /set NAME VALUE (temperature, top_p, top_k, min_p, max_tokens, "
    "seed, repeat_penalty), /think show|hide, /help, /exit";

// Applies "/set NAME VALUE"; returns a message for the user. A value out of range leaves the
// settings as they were and the chat going (it used to end the session).
std::string apply_setting(GenerationOptions& generation, const std::string& name, const std::string& value) {
  GenerationOptions changed = generation;
  SamplingParams& s = changed.sampling;
  try {
    if (name == "temperature" || name == "temp") s.temperature = std::stof(value);
    else if (name == "top_p") s.top_p = std::stof(value);
    else if (name == "top_k") s.top_k = std::stoi(value);
    else if (name == "min_p") s.min_p = std::stof(value);
    else if (name == "repeat_penalty") s.repetition_penalty = std::stof(value);
    else if (name == "max_tokens") changed.max_tokens = std::stoi(value);
    else if (name == "seed") s.seed = std::stoull(value);
    else return "unknown setting '" + echo_excerpt(name, 40) + "'; " + kHelp;
    s.validate();
    if (changed.max_tokens < 1) return "max_tokens must be at least 1; unchanged";
  } catch (const std::logic_error&) {
    return "'" + echo_excerpt(value, 40) + "' is not a valid value for " + name;
  } catch (const Error& error) {
    return std::string(error.what()) + "; unchanged";
  }
  generation = changed;
  return name + " = " + value;
}

class ChatLoop {
 public:
  ChatLoop(ChatOptions options, ModelSession& session)
      : options_(std::move(options)), session_(session), tokenizer_(session.require_tokenizer()),
        template_(resolve_chat_template(tokenizer_, options_.chat.template_name)) {
    reset();
  }

  void run() {
    const bool interactive = stdout_is_terminal();
    std::string line;
    for (;;) {
      if (interactive) std::fputs("\n> ", stdout), std::fflush(stdout);
      g_interrupted.store(false);
      if (!std::getline(std::cin, line) || g_interrupted.load()) break;
      if (line.empty()) continue;
      if (line[0] == '/') {
        if (!command(line)) break;
        continue;
      }
      reply(line);
    }
  }

 private:
  void reset() {
    messages_.clear();
    if (!options_.chat.system.empty()) messages_.push_back({"system", options_.chat.system});
    session_.cache->release(sequence_.kv);
    sequence_.tokens.clear();
  }

  bool command(const std::string& line) {
    std::istringstream words(line);
    std::string name, arg1, arg2;
    words >> name >> arg1 >> arg2;
    if (name == "/exit" || name == "/quit") return false;
    if (name == "/reset") reset(), std::puts("(conversation cleared)");
    else if (name == "/set") std::puts(apply_setting(options_.generation, arg1, arg2).c_str());
    else if (name == "/think") options_.chat.hide_think = arg1 == "hide", std::puts(options_.chat.hide_think ? "(reasoning hidden)" : "(reasoning shown)");
    else std::puts(kHelp);
    return true;
  }

  void reply(const std::string& user_text) {
    messages_.push_back({"user", user_text});
    ChatPrompt prompt = build_chat_prompt(tokenizer_, template_, messages_);
    StreamPrinter printer(options_.chat.hide_think ? ReasoningDisplay::Hide : ReasoningDisplay::Dim, prompt.opens_reasoning);
    std::string answer = prompt.opens_reasoning ? "<think>\n" : "";
    g_interrupted.store(false);
    GenerationStats stats;
    try {
      stats = generate(session_.transformer(), *session_.cache, sequence_, tokenizer_, prompt.tokens, options_.generation,
                       [&](std::string_view text) { answer.append(text), printer.print(text); }, &g_interrupted);
    } catch (const Error& error) {  // e.g. the context is full: the chat goes on after /reset
      printer.finish();
      messages_.pop_back();
      std::printf("\n(error: %s)\n", error.what());
      return;
    }
    printer.finish();
    std::printf("\n");
    if (stats.cancelled) std::puts("(stopped)");
    messages_.push_back({"assistant", answer});
    if (!options_.chat.quiet) {
      std::fprintf(stderr, "%s\n", format_speed(stats, session_.transformer().weights().matrix_bytes).c_str());
    }
  }

  ChatOptions options_;
  ModelSession& session_;
  const Tokenizer& tokenizer_;
  ChatTemplateKind template_;
  std::vector<ChatMessage> messages_;
  CachedSequence sequence_;
};

void run_chat(ChatOptions options) {
  ModelSession session = open_model_session(options.model, true);
  open_draft(session, options.draft, options.model, session.cache->capacity_tokens());
  options.generation.drafter = session.drafter.get();
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);  // no SA_RESTART: Ctrl-C at the prompt ends the chat
  if (stdout_is_terminal()) std::printf("retort chat — %s\n%s\n", options.model.model_path.c_str(), kHelp);
  ChatLoop(options, session).run();
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto options = std::make_shared<ChatOptions>();
  auto* command = app.add_subcommand("chat", "Interactive multi-turn chat with a model");
  options->model.kv_type = "f16";  // llama.cpp's default too; --kv-type f32 for exact
  options->model.act_type = "bf16";  // llama.cpp does the same for bf16 files; --act-type f32 for exact
  add_model_options(*command, options->model);
  add_sampling_options(*command, options->generation);
  add_draft_options(*command, options->draft);
  add_chat_display_options(*command, options->chat);
  command->callback([options] { run_chat(*options); });
}

}  // namespace retort::cli
