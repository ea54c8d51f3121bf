#pragma once
// Splits DeepSeek-R1 output into reasoning (between <think> and </think>) and the answer, as text
// streams in. Tags may arrive split across pieces, so a possible tag prefix is held back until the
// next piece settles it. When the chat template already put "<think>\n" into the prompt, the
// output starts inside the reasoning with no opening tag: construct with starts_in_reasoning.
#include <string>
#include <string_view>
#include <vector>

namespace retort {

enum class TextChannel { Reasoning, Content };

struct ChannelText {
  TextChannel channel;
  std::string text;
};

class ReasoningSplitter {
 public:
  explicit ReasoningSplitter(bool starts_in_reasoning);

  std::vector<ChannelText> push(std::string_view piece);
  std::vector<ChannelText> flush();  // end of generation: release anything held back
  bool in_reasoning() const { return in_reasoning_; }

 private:
  void emit(std::vector<ChannelText>& out, std::string_view text) const;
  // The answer after </think> conventionally starts with blank lines; they are not content.
  void drop_newlines_after_reasoning();

  bool in_reasoning_;
  bool seen_any_text_ = false;
  bool strip_newlines_ = false;
  std::string held_;
};

// True when a rendered prompt ends by opening the reasoning block (the current R1 templates).
bool prompt_opens_reasoning(std::string_view rendered_prompt);

}  // namespace retort
