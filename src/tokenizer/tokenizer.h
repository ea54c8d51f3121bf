#pragma once
// A Hugging Face `tokenizer.json` byte-level BPE tokenizer (Qwen2, Llama 3, DeepSeek-V3 and the
// DeepSeek-R1-Distill models built on them), giving the same ids as the `tokenizers` library.
//
// encode: invalid UTF-8 never fails. Valid runs of the input go through the whole pipeline (added
// tokens, normalizer, pre-tokenizer, BPE); each byte that is not part of a valid character becomes
// its own single-byte token, so decode(encode(bytes)) gives the bytes back (after normalization of
// the valid parts, e.g. NFC for Qwen2).
// decode: returns the raw bytes the tokens stand for, which may end inside a multi-byte character;
// StreamingDecoder turns ids into valid UTF-8 text piece by piece.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace retort {

class Tokenizer {
 public:
  // Takes a tokenizer.json path or a directory holding one; also reads tokenizer_config.json beside
  // it if present (BOS/EOS, add_bos_token, chat_template).
  static std::unique_ptr<Tokenizer> load(const std::string& tokenizer_json_or_dir);
  // The same from the files' contents (config_json may be empty); `origin` names them in errors.
  static std::unique_ptr<Tokenizer> from_json_text(std::string_view tokenizer_json, std::string_view config_json,
                                                   const std::string& origin = "tokenizer.json");

  // add_special: add what the model expects around a sequence (BOS for Llama 3, DeepSeek-R1-Distill).
  std::vector<int32_t> encode(std::string_view text, bool add_special = false) const;
  // Throws OutOfRange for ids that are not tokens. skip_special leaves out special added tokens.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  std::string token_bytes(int32_t id) const;  // raw bytes a token stands for
  int32_t vocab_size() const;                 // number of ids (incl. added tokens)
  std::optional<int32_t> bos_id() const;
  std::vector<int32_t> eos_ids() const;  // from tokenizer_config eos_token
  // An added token's content, or a vocabulary entry as spelled in tokenizer.json ("Ġworld") or as
  // raw bytes (" world").
  std::optional<int32_t> token_id(std::string_view token_text) const;
  bool is_special(int32_t id) const;
  const std::string& chat_template_source() const;  // tokenizer_config.json "chat_template", may be empty

  // The normalizer alone (e.g. NFC): encode then decode gives normalize(text) for valid UTF-8.
  std::string normalize(std::string_view text) const;
  // Ids put before and after a sequence when add_special is true.
  const std::vector<int32_t>& prefix_ids() const { return prefix_ids_; }
  const std::vector<int32_t>& suffix_ids() const { return suffix_ids_; }
  bool is_token(int32_t id) const;

 private:
  friend class TokenizerLoader;
  Tokenizer() = default;

  void encode_valid_utf8(std::string_view text, std::vector<int32_t>& ids) const;
  void encode_normalized(std::string_view text, std::vector<int32_t>& ids) const;
  void check_id(int32_t id) const;

  enum class IdKind : uint8_t { Unassigned, Vocabulary, Added, AddedSpecial };

  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  BpeModel bpe_;
  AddedTokenMatcher raw_added_tokens_;         // matched before normalization
  AddedTokenMatcher normalized_added_tokens_;  // matched after normalization
  std::vector<AddedToken> added_tokens_;
  std::vector<std::string> id_bytes_;  // indexed by id
  std::vector<IdKind> id_kinds_;       // indexed by id
  std::vector<int32_t> prefix_ids_;
  std::vector<int32_t> suffix_ids_;
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
  std::string chat_template_;
};

// Turns ids into text one at a time, emitting only whole UTF-8 characters: a token can end inside
// a multi-byte character, whose bytes are held until the rest arrives. Bytes that can never form a
// character become U+FFFD, so everything emitted is valid UTF-8.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  std::string push(int32_t id);
  std::string flush();  // emits what is held back (as U+FFFD: the character never completed)

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace retort
