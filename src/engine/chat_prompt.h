#pragma once
// Turns chat messages into the prompt tokens a model expects, through its chat template (picked
// from tokenizer_config.json, or named by the user).
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace retort {

struct ChatPrompt {
  std::string text;
  std::vector<int32_t> tokens;
  bool opens_reasoning = false;  // the template ended the prompt with "<think>\n"
};

// The template to use: the named one, else the one the tokenizer's config carries.
ChatTemplateKind resolve_chat_template(const Tokenizer& tokenizer, const std::string& template_name);

ChatPrompt build_chat_prompt(const Tokenizer& tokenizer, ChatTemplateKind kind,
                             const std::vector<ChatMessage>& messages);

}  // namespace retort
