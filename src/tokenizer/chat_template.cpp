#include "tokenizer/chat_template.h"

#include <array>

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace retort {
namespace {

struct NamedKind {
  std::string_view name;
  ChatTemplateKind kind;
};
constexpr std::array<NamedKind, 5> kNamedKinds{{
    {"deepseek-r1", ChatTemplateKind::DeepSeekR1},
    {"deepseek-r1-legacy", ChatTemplateKind::DeepSeekR1Legacy},
    {"chatml", ChatTemplateKind::ChatML},
    {"llama3", ChatTemplateKind::Llama3},
    {"llama3.0", ChatTemplateKind::Llama30},
}};

constexpr std::string_view kDeepSeekBos = "<｜begin▁of▁sentence｜>";
constexpr std::string_view kDeepSeekEos = "<｜end▁of▁sentence｜>";
constexpr std::string_view kDeepSeekUser = "<｜User｜>";
constexpr std::string_view kDeepSeekAssistant = "<｜Assistant｜>";
constexpr std::string_view kQwenDefaultSystem = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
constexpr std::string_view kLlamaBos = "<|begin_of_text|>";

bool contains(std::string_view text, std::string_view marker) { return text.find(marker) != std::string_view::npos; }

// Only system/user/assistant are rendered; tool turns need fields ChatMessage does not carry.
void check_roles(const std::vector<ChatMessage>& messages) {
  for (const ChatMessage& message : messages) {
    if (message.role == "system" || message.role == "user" || message.role == "assistant") continue;
    require(message.role != "tool" && message.role != "ipython", ErrorKind::Unsupported,
            "chat message role \"{}\": tool calls and tool results are not supported by retort's chat templates; "
            "send system, user and assistant messages",
            message.role);
    fail(ErrorKind::InvalidInput, "chat message role \"{}\" is not one of system, user, assistant", message.role);
  }
}

void require_first_message(const std::vector<ChatMessage>& messages, ChatTemplateKind kind) {
  require(!messages.empty(), ErrorKind::InvalidInput,
          "the {} chat template needs at least one message; the conversation is empty", chat_template_name(kind));
}

// DeepSeek-R1-Distill: the last system message goes first, right after BOS; earlier assistant
// turns keep only what follows their last "</think>" (the reasoning is dropped).
// The generation prompt opens the reasoning with "<think>\n", as the R1-Distill-Llama template
// does unconditionally. The R1-Distill-Qwen-32B template in ../shared adds
// `{% if not enable_thinking %}</think>{% endif %}`, so a renderer that passes no enable_thinking
// at all would close the reasoning at once; retort treats thinking as on unless the caller turns
// it off (ChatOptions::enable_thinking = false gives that "<think>\n</think>" form).
std::string render_deepseek_r1(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                               bool opens_reasoning, const ChatOptions& options) {
  std::string system_prompt;
  for (const ChatMessage& message : messages) {
    if (message.role == "system") system_prompt = message.content;
  }
  std::string prompt(kDeepSeekBos);
  prompt += system_prompt;
  for (const ChatMessage& message : messages) {
    if (message.role == "user") {
      prompt += kDeepSeekUser;
      prompt += message.content;
    } else if (message.role == "assistant") {
      std::string_view content = message.content;
      const size_t think_end = content.rfind("</think>");
      if (think_end != std::string_view::npos) content.remove_prefix(think_end + std::string_view("</think>").size());
      prompt += kDeepSeekAssistant;
      prompt += content;
      prompt += kDeepSeekEos;
    }
  }
  if (add_generation_prompt) {
    prompt += kDeepSeekAssistant;
    if (opens_reasoning) {
      prompt += "<think>\n";
      if (!options.enable_thinking) prompt += "</think>";
    }
  }
  return prompt;
}

// Qwen2.5 ChatML: a system turn always comes first (the default one when none is given).
std::string render_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  require_first_message(messages, ChatTemplateKind::ChatML);
  std::string prompt = "<|im_start|>system\n";
  prompt += messages.front().role == "system" ? std::string_view(messages.front().content) : kQwenDefaultSystem;
  prompt += "<|im_end|>\n";
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0 && messages[i].role == "system") continue;  // already rendered above
    prompt += "<|im_start|>" + messages[i].role + "\n" + messages[i].content + "<|im_end|>\n";
  }
  if (add_generation_prompt) prompt += "<|im_start|>assistant\n";
  return prompt;
}

void append_llama_turn(std::string& prompt, std::string_view role, std::string_view content) {
  prompt += "<|start_header_id|>";
  prompt += role;
  prompt += "<|end_header_id|>\n\n";
  prompt += utf8::trim_whitespace(content);
  prompt += "<|eot_id|>";
}

// Llama 3.1: the system turn always exists and carries the knowledge-cutoff and date lines; every
// message's content is trimmed of surrounding whitespace.
std::string render_llama31(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                           const ChatOptions& options) {
  require_first_message(messages, ChatTemplateKind::Llama3);
  const bool has_system = messages.front().role == "system";
  std::string prompt(kLlamaBos);
  prompt += "<|start_header_id|>system<|end_header_id|>\n\n";
  prompt += "Cutting Knowledge Date: December 2023\n";
  prompt += "Today Date: " + options.date_string + "\n\n";
  if (has_system) prompt += utf8::trim_whitespace(messages.front().content);
  prompt += "<|eot_id|>";
  for (size_t i = has_system ? 1 : 0; i < messages.size(); ++i) {
    append_llama_turn(prompt, messages[i].role, messages[i].content);
  }
  if (add_generation_prompt) prompt += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return prompt;
}

// Llama 3.0: BOS, then each message as a header and its trimmed content.
std::string render_llama30(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string prompt;
  if (!messages.empty()) prompt += kLlamaBos;
  for (const ChatMessage& message : messages) append_llama_turn(prompt, message.role, message.content);
  if (add_generation_prompt) prompt += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return prompt;
}

}  // namespace

std::optional<ChatTemplateKind> chat_template_from_name(std::string_view name) {
  for (const NamedKind& named : kNamedKinds) {
    if (named.name == name) return named.kind;
  }
  return std::nullopt;
}

std::string_view chat_template_name(ChatTemplateKind kind) {
  for (const NamedKind& named : kNamedKinds) {
    if (named.kind == kind) return named.name;
  }
  return "unknown";
}

std::string chat_template_names() {
  std::string names;
  for (const NamedKind& named : kNamedKinds) {
    if (!names.empty()) names += ", ";
    names += named.name;
  }
  return names;
}

ChatTemplateKind detect_chat_template(std::string_view source) {
  require(!source.empty(), ErrorKind::Unsupported,
          "the tokenizer has no chat template (tokenizer_config.json \"chat_template\"); name one of: {}",
          chat_template_names());
  if (contains(source, kDeepSeekUser) && contains(source, kDeepSeekAssistant)) {
    if (contains(source, "<｜Assistant｜><think>")) return ChatTemplateKind::DeepSeekR1;
    // R1's templates drop earlier reasoning; DeepSeek-V3's (same markers) does not.
    if (contains(source, "</think>")) return ChatTemplateKind::DeepSeekR1Legacy;
    fail(ErrorKind::Unsupported,
         "the chat template uses DeepSeek's markers but is not DeepSeek-R1's (e.g. DeepSeek-V3's); name one of: {}",
         chat_template_names());
  }
  if (contains(source, "<|im_start|>")) {
    require(contains(source, kQwenDefaultSystem), ErrorKind::Unsupported,
            "the chat template is ChatML without Qwen2.5's default system prompt (e.g. Qwen3's), which retort does "
            "not implement; name one of: {}",
            chat_template_names());
    return ChatTemplateKind::ChatML;
  }
  if (contains(source, "<|start_header_id|>")) {
    return contains(source, "Cutting Knowledge Date") ? ChatTemplateKind::Llama3 : ChatTemplateKind::Llama30;
  }
  fail(ErrorKind::Unsupported, "the chat template is not one retort recognises; name one of: {}",
       chat_template_names());
}

std::string render_chat(ChatTemplateKind kind, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  return render_chat(kind, messages, add_generation_prompt, ChatOptions{});
}

std::string render_chat(ChatTemplateKind kind, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        const ChatOptions& options) {
  check_roles(messages);
  switch (kind) {
    case ChatTemplateKind::DeepSeekR1:
      return render_deepseek_r1(messages, add_generation_prompt, true, options);
    case ChatTemplateKind::DeepSeekR1Legacy:
      return render_deepseek_r1(messages, add_generation_prompt, false, options);
    case ChatTemplateKind::ChatML:
      return render_chatml(messages, add_generation_prompt);
    case ChatTemplateKind::Llama3:
      return render_llama31(messages, add_generation_prompt, options);
    case ChatTemplateKind::Llama30:
      return render_llama30(messages, add_generation_prompt);
  }
  fail(ErrorKind::Internal, "unhandled chat template kind");
}

}  // namespace retort
