#pragma once
// Chat templates as C++: each renders system/user/assistant messages exactly as the official Jinja
// template does (the sources are in ../shared/data/chat-templates/), without a Jinja interpreter.
// A model's template is recognised in tokenizer_config.json's "chat_template" by its markers, or
// named by the user. Tool calls and tool messages are not supported (a clear error says so).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace retort {

struct ChatMessage {
  std::string role;  // system | user | assistant
  std::string content;
};

enum class ChatTemplateKind {
  DeepSeekR1,        // DeepSeek-R1-Distill (Qwen and Llama): generation prompt "<｜Assistant｜><think>\n"
  DeepSeekR1Legacy,  // the earlier R1-Distill template: generation prompt "<｜Assistant｜>"
  ChatML,            // Qwen2.5-Instruct, with its default system prompt when none is given
  Llama3,            // Llama 3.1-Instruct, with its "Cutting Knowledge Date" system header
  Llama30,           // Llama 3.0-Instruct: headers only, no default system header
};

struct ChatOptions {
  // DeepSeekR1: the reasoning opens with "<think>\n". false appends "</think>", as the R1-Distill-Qwen
  // template's enable_thinking=false does.
  bool enable_thinking = true;
  std::string date_string = "26 Jul 2024";  // Llama3: "Today Date" (the template's own default)
};

// "deepseek-r1", "deepseek-r1-legacy", "chatml", "llama3", "llama3.0"; nullopt for anything else.
std::optional<ChatTemplateKind> chat_template_from_name(std::string_view name);
std::string_view chat_template_name(ChatTemplateKind kind);
// The names chat_template_from_name accepts, comma-separated (for help texts and errors).
std::string chat_template_names();

// Throws Unsupported when the template is empty or not one of the above.
ChatTemplateKind detect_chat_template(std::string_view template_source);

// Throws InvalidInput for an unknown role, Unsupported for tool messages, and InvalidInput for an
// empty conversation where the template needs a first message (ChatML, Llama 3).
std::string render_chat(ChatTemplateKind kind, const std::vector<ChatMessage>& messages, bool add_generation_prompt);
std::string render_chat(ChatTemplateKind kind, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        const ChatOptions& options);

}  // namespace retort
