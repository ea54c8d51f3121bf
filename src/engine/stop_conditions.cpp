#include "engine/stop_conditions.h"

#include <algorithm>
#include <utility>

#include "util/error.h"

namespace retort {

const char* openai_finish_reason(StopReason reason) {
  switch (reason) {
    case StopReason::Eos:
    case StopReason::StopString:
      return "stop";
    case StopReason::MaxTokens:
      return "length";
    case StopReason::None:
      break;
  }
  return "";
}

StopChecker::StopChecker(std::vector<int32_t> eos_ids, std::vector<std::string> stop_strings, int max_tokens)
    : eos_ids_(std::move(eos_ids)), max_tokens_(max_tokens) {
  require(max_tokens >= 1, ErrorKind::InvalidInput, "max_tokens must be at least 1, got {}", max_tokens);
  for (std::string& stop : stop_strings) {
    if (stop.empty()) continue;
    longest_stop_string_ = std::max(longest_stop_string_, stop.size());
    stop_strings_.push_back(std::move(stop));
  }
}

StopResult StopChecker::push(int32_t token, std::string_view text_piece) {
  if (stopped()) return {true, reason_, {}, {}};
  ++tokens_seen_;
  if (std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end())
    return finish(StopReason::Eos, std::exchange(held_, {}));

  held_ += text_piece;
  size_t matched_index = 0;
  size_t stop_at = find_stop_string(matched_index);
  if (stop_at != std::string::npos) {
    std::string before_stop = held_.substr(0, stop_at);
    held_.clear();
    return finish(StopReason::StopString, std::move(before_stop), stop_strings_[matched_index]);
  }
  size_t hold_from = start_of_possible_stop();
  std::string ready = held_.substr(0, hold_from);
  held_.erase(0, hold_from);
  if (tokens_seen_ >= max_tokens_) return finish(StopReason::MaxTokens, ready + std::exchange(held_, {}));
  return {false, StopReason::None, std::move(ready), {}};
}

std::string StopChecker::flush() { return std::exchange(held_, {}); }

StopResult StopChecker::finish(StopReason reason, std::string text, std::string matched) {
  reason_ = reason;
  return {true, reason, std::move(text), std::move(matched)};
}

size_t StopChecker::find_stop_string(size_t& matched_index) const {
  size_t earliest = std::string::npos;
  for (size_t index = 0; index < stop_strings_.size(); ++index) {
    size_t position = held_.find(stop_strings_[index]);
    if (position == std::string::npos) continue;
    bool longer_at_same_place =
        position == earliest && stop_strings_[index].size() > stop_strings_[matched_index].size();
    if (position < earliest || longer_at_same_place) {
      earliest = position;
      matched_index = index;
    }
  }
  return earliest;
}

size_t StopChecker::start_of_possible_stop() const {
  // held_ contains no whole stop string here, so only a proper prefix can be pending; a stop
  // string begins with a UTF-8 lead byte, so the split never lands inside a character.
  size_t first = held_.size() >= longest_stop_string_ ? held_.size() - longest_stop_string_ + 1 : 0;
  for (size_t start = first; start < held_.size(); ++start) {
    std::string_view suffix = std::string_view(held_).substr(start);
    for (const std::string& stop : stop_strings_) {
      if (stop.size() > suffix.size() && std::string_view(stop).substr(0, suffix.size()) == suffix) return start;
    }
  }
  return held_.size();
}

}  // namespace retort
