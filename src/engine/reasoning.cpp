#include "engine/reasoning.h"

#include <algorithm>

namespace retort {

namespace {
constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

// Length of the longest suffix of `text` that is a proper prefix of `tag`.
size_t partial_tag_suffix(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}
}  // namespace

ReasoningSplitter::ReasoningSplitter(bool starts_in_reasoning) : in_reasoning_(starts_in_reasoning) {}

void ReasoningSplitter::emit(std::vector<ChannelText>& out, std::string_view text) const {
  if (text.empty()) return;
  const TextChannel channel = in_reasoning_ ? TextChannel::Reasoning : TextChannel::Content;
  if (!out.empty() && out.back().channel == channel) {
    out.back().text.append(text);
  } else {
    out.push_back({channel, std::string(text)});
  }
}

void ReasoningSplitter::drop_newlines_after_reasoning() {
  if (!strip_newlines_ || in_reasoning_) return;
  const size_t first = held_.find_first_not_of('\n');
  held_.erase(0, first == std::string::npos ? held_.size() : first);
  if (!held_.empty()) strip_newlines_ = false;
}

std::vector<ChannelText> ReasoningSplitter::push(std::string_view piece) {
  std::vector<ChannelText> out;
  held_.append(piece);
  drop_newlines_after_reasoning();
  for (;;) {
    const std::string_view tag = in_reasoning_ ? kClose : kOpen;
    const size_t at = held_.find(tag);
    if (at == std::string::npos) break;
    emit(out, std::string_view(held_).substr(0, at));
    // An opening tag only counts at the start of the output (models do not reopen reasoning).
    if (in_reasoning_ || (!seen_any_text_ && at == 0)) {
      in_reasoning_ = !in_reasoning_;
      strip_newlines_ = !in_reasoning_;
    } else {
      emit(out, tag);
    }
    seen_any_text_ = true;
    held_.erase(0, at + tag.size());
    drop_newlines_after_reasoning();
  }
  const std::string_view tag = in_reasoning_ ? kClose : kOpen;
  const size_t keep = partial_tag_suffix(held_, tag);
  if (held_.size() > keep) seen_any_text_ = true;
  emit(out, std::string_view(held_).substr(0, held_.size() - keep));
  held_.erase(0, held_.size() - keep);
  return out;
}

std::vector<ChannelText> ReasoningSplitter::flush() {
  std::vector<ChannelText> out;
  emit(out, held_);
  held_.clear();
  return out;
}

bool prompt_opens_reasoning(std::string_view rendered_prompt) {
  std::string_view trimmed = rendered_prompt;
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == ' ')) trimmed.remove_suffix(1);
  return trimmed.size() >= kOpen.size() && trimmed.substr(trimmed.size() - kOpen.size()) == kOpen;
}

}  // namespace retort
