#include "tokenizer/tokenizer.h"

#include <deque>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace retort {

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special) ids.insert(ids.end(), prefix_ids_.begin(), prefix_ids_.end());
  for (const utf8::Run& run : utf8::split_valid_runs(text)) {
    if (run.valid) {
      encode_valid_utf8(run.bytes, ids);
      continue;
    }
    // Not text: each byte is its own token, so decoding gives the same bytes back.
    for (char byte : run.bytes) {
      int32_t id = bpe_.byte_id(static_cast<uint8_t>(byte));
      if (id >= 0) ids.push_back(id);
    }
  }
  if (add_special) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

void Tokenizer::encode_valid_utf8(std::string_view text, std::vector<int32_t>& ids) const {
  // Added tokens with normalized=false are found in the text as given, before normalization.
  for (const TextSegment& segment : raw_added_tokens_.split(text)) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
      continue;
    }
    std::string_view plain = text.substr(segment.begin, segment.end - segment.begin);
    if (normalizer_.is_identity()) {
      encode_normalized(plain, ids);
    } else {
      encode_normalized(normalizer_.normalize(plain), ids);
    }
  }
}

void Tokenizer::encode_normalized(std::string_view text, std::vector<int32_t>& ids) const {
  std::deque<std::string> storage;
  const PreTokenizer::PieceSink encode_piece = [&](std::string_view piece) { bpe_.encode_word(piece, ids); };
  const auto encode_plain = [&](std::string_view plain) { pre_tokenizer_.split(plain, storage, encode_piece); };
  if (normalized_added_tokens_.empty()) {
    encode_plain(text);
    return;
  }
  for (const TextSegment& segment : normalized_added_tokens_.split(text)) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
    } else {
      encode_plain(text.substr(segment.begin, segment.end - segment.begin));
    }
  }
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string text;
  for (int32_t id : ids) {
    check_id(id);
    if (skip_special && id_kinds_[id] == IdKind::AddedSpecial) continue;
    text += id_bytes_[id];
  }
  return text;
}

void Tokenizer::check_id(int32_t id) const {
  require(id >= 0 && id < vocab_size(), ErrorKind::OutOfRange,
          "token id {} is out of range: this tokenizer has ids 0..{}; check that the ids come from the same model",
          id, vocab_size() - 1);
  require(id_kinds_[id] != IdKind::Unassigned, ErrorKind::OutOfRange,
          "token id {} is not assigned to any token in this tokenizer; check that the ids come from the same model",
          id);
}

std::string Tokenizer::token_bytes(int32_t id) const {
  check_id(id);
  return id_bytes_[id];
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(id_bytes_.size()); }

bool Tokenizer::is_token(int32_t id) const {
  return id >= 0 && id < vocab_size() && id_kinds_[id] != IdKind::Unassigned;
}

std::optional<int32_t> Tokenizer::bos_id() const { return bos_id_; }

std::vector<int32_t> Tokenizer::eos_ids() const { return eos_ids_; }

std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  for (const AddedToken& token : added_tokens_) {
    if (token.content == token_text) return token.id;
  }
  // decode_token leaves text outside the byte-level alphabet as it is, so raw bytes work too.
  return bpe_.find(byte_level::decode_token(token_text));
}

bool Tokenizer::is_special(int32_t id) const { return is_token(id) && id_kinds_[id] == IdKind::AddedSpecial; }

const std::string& Tokenizer::chat_template_source() const { return chat_template_; }

std::string Tokenizer::normalize(std::string_view text) const {
  std::string normalized;
  for (const utf8::Run& run : utf8::split_valid_runs(text)) {
    normalized += run.valid ? normalizer_.normalize(run.bytes) : std::string(run.bytes);
  }
  return normalized;
}

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamingDecoder::push(int32_t id) {
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  pending_ += tokenizer_.token_bytes(id);
  // Hold back a character that has started but not finished; everything before it can go out.
  const size_t held = utf8::incomplete_tail_length(pending_);
  std::string text = utf8::replace_invalid(std::string_view(pending_).substr(0, pending_.size() - held));
  pending_.erase(0, pending_.size() - held);
  return text;
}

std::string StreamingDecoder::flush() {
  std::string text = utf8::replace_invalid(pending_);
  pending_.clear();
  return text;
}

}  // namespace retort
