#pragma once
// The `normalizer` of tokenizer.json: Unicode normalization forms (NFC for Qwen2) applied to text
// before pre-tokenization, possibly as a Sequence. A null normalizer leaves text unchanged.
#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace retort {

enum class NormalizationForm { NFC, NFD, NFKC, NFKD };

class Normalizer {
 public:
  Normalizer() = default;
  // Throws Unsupported for normalizer types retort does not implement (e.g. Lowercase, Replace).
  static Normalizer from_json(const nlohmann::json& config);

  bool is_identity() const { return forms_.empty(); }
  // text must be valid UTF-8.
  std::string normalize(std::string_view text) const;

 private:
  std::string normalize_part(std::string_view text) const;

  std::vector<NormalizationForm> forms_;
};

}  // namespace retort
