#include "engine/chat_prompt.h"

#include "engine/reasoning.h"
#include "util/error.h"

namespace retort {

ChatTemplateKind resolve_chat_template(const Tokenizer& tokenizer, const std::string& template_name) {
  if (!template_name.empty()) {
    auto named = chat_template_from_name(template_name);
    require(named.has_value(), ErrorKind::InvalidInput,
            "unknown chat template '{}'; use one of deepseek-r1, deepseek-r1-legacy, chatml, llama3", template_name);
    return *named;
  }
  require(!tokenizer.chat_template_source().empty(), ErrorKind::InvalidInput,
          "the model's tokenizer_config.json has no chat_template; name one with --template "
          "(deepseek-r1, deepseek-r1-legacy, chatml, llama3) or use --raw");
  return detect_chat_template(tokenizer.chat_template_source());
}

ChatPrompt build_chat_prompt(const Tokenizer& tokenizer, ChatTemplateKind kind,
                             const std::vector<ChatMessage>& messages) {
  ChatPrompt prompt;
  prompt.text = render_chat(kind, messages, /*add_generation_prompt=*/true);
  // The template writes BOS and other markers as text; they are matched as added tokens.
  prompt.tokens = tokenizer.encode(prompt.text, /*add_special=*/false);
  prompt.opens_reasoning = prompt_opens_reasoning(prompt.text);
  return prompt;
}

}  // namespace retort
