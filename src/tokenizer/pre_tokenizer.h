#pragma once
// The `pre_tokenizer` of tokenizer.json: cuts normalized text into the pieces ("words") that BPE
// encodes one at a time. Supported: Split (regex or literal, every split behaviour), ByteLevel
// (its optional prefix space and GPT-2 regex; its byte-to-character mapping is implicit because
// retort keeps tokens as raw bytes), and Sequence of them, as Qwen2, Llama 3 and DeepSeek-V3 use.
#include <nlohmann/json_fwd.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace retort {

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

class PreTokenizer {
 public:
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Throws Unsupported for pre-tokenizer types retort does not implement (Metaspace, Whitespace, ...).
  static PreTokenizer from_json(const nlohmann::json& config);

  // True when a ByteLevel step was present: the vocabulary is then in the byte-level alphabet.
  bool has_byte_level() const { return has_byte_level_; }

  // Calls sink(piece) for each non-empty piece of `text`, in order; a piece views either `text` or
  // a string that this call appended to `storage` (when a prefix space was added).
  using PieceSink = std::function<void(std::string_view)>;
  void split(std::string_view text, std::deque<std::string>& storage, const PieceSink& sink) const;

 private:
  struct Step;
  std::vector<Step> steps_;
  bool has_byte_level_ = false;

  void append_steps(const nlohmann::json& config);
  void split_from(size_t step_index, std::string_view piece, std::deque<std::string>& storage,
                  const PieceSink& sink) const;
};

}  // namespace retort
