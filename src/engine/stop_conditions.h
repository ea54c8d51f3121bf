#pragma once
// Decides when generation ends and which text may be streamed now, with OpenAI semantics: the
// stop string itself is never emitted, and neither is anything after it. Text that could still
// become a stop string ("</" while "</answer>" is a stop) is held back until the next pieces
// decide; if generation ends first, the held text is real output and is released.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace retort {

enum class StopReason {
  None,        // keep generating
  Eos,         // an end-of-sequence token (its text is not emitted)
  StopString,  // one of the stop strings appeared in the text
  MaxTokens,   // the token budget is spent
};

// "stop", "length" or "" as OpenAI's finish_reason.
const char* openai_finish_reason(StopReason reason);

struct StopResult {
  bool stop = false;
  StopReason reason = StopReason::None;
  std::string text;                 // safe to emit now (may be empty while text is held back)
  std::string matched_stop_string;  // which stop string ended generation, for StopString
};

class StopChecker {
 public:
  // max_tokens counts every pushed token, the EOS included; it must be at least 1. Empty stop
  // strings are ignored (they would match everywhere).
  StopChecker(std::vector<int32_t> eos_ids, std::vector<std::string> stop_strings, int max_tokens);

  // Feed each generated token and its decoded text (from the streaming detokenizer, so whole
  // UTF-8 characters). After a stop, further pushes return the same reason and no text.
  StopResult push(int32_t token, std::string_view text_piece);

  // Releases held-back text when generation ends for a reason outside this checker (the client
  // went away, the context is full). Empty after a stop.
  std::string flush();

  int tokens_seen() const { return tokens_seen_; }
  bool stopped() const { return reason_ != StopReason::None; }

 private:
  StopResult finish(StopReason reason, std::string text, std::string matched = {});
  // Index of the earliest stop string in held_ (ties: the longest), or npos.
  size_t find_stop_string(size_t& matched_index) const;
  // Where the longest suffix of held_ that begins some stop string starts; held_.size() if none.
  size_t start_of_possible_stop() const;

  std::vector<int32_t> eos_ids_;
  std::vector<std::string> stop_strings_;
  int max_tokens_;
  int tokens_seen_ = 0;
  size_t longest_stop_string_ = 0;
  std::string held_;  // decoded text not yet emitted
  StopReason reason_ = StopReason::None;
};

}  // namespace retort
