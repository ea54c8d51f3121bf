#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace retort {
namespace {

void append_forms(const nlohmann::json& config, std::vector<NormalizationForm>& forms) {
  if (config.is_null()) return;
  require(config.is_object() && config.contains("type") && config["type"].is_string(), ErrorKind::InvalidInput,
          "tokenizer.json: expected the normalizer to be null or an object with a \"type\", found {}",
          config.dump().substr(0, 200));
  const std::string type = config["type"].get<std::string>();
  if (type == "Sequence") {
    require(config.contains("normalizers") && config["normalizers"].is_array(), ErrorKind::InvalidInput,
            "tokenizer.json: a Sequence normalizer needs a \"normalizers\" array");
    for (const auto& step : config["normalizers"]) append_forms(step, forms);
  } else if (type == "NFC") {
    forms.push_back(NormalizationForm::NFC);
  } else if (type == "NFD") {
    forms.push_back(NormalizationForm::NFD);
  } else if (type == "NFKC") {
    forms.push_back(NormalizationForm::NFKC);
  } else if (type == "NFKD") {
    forms.push_back(NormalizationForm::NFKD);
  } else {
    fail(ErrorKind::Unsupported,
         "tokenizer.json: normalizer type \"{}\" is not supported (retort implements NFC, NFD, NFKC, NFKD and "
         "Sequence of them, as byte-level BPE tokenizers use)",
         type);
  }
}

utf8proc_option_t options_of(NormalizationForm form) {
  switch (form) {
    case NormalizationForm::NFC: return static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    case NormalizationForm::NFD: return static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
    case NormalizationForm::NFKC:
      return static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    case NormalizationForm::NFKD:
      return static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  }
  return UTF8PROC_STABLE;
}

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& config) {
  Normalizer normalizer;
  append_forms(config, normalizer.forms_);
  return normalizer;
}

std::string Normalizer::normalize(std::string_view text) const {
  if (forms_.empty()) return std::string(text);
  // No normalization form changes an ASCII character, reorders across one or composes one with what
  // precedes it, so text can be cut before every ASCII character and the parts normalized alone.
  // Only the parts holding non-ASCII characters (with the ASCII character before them, which a
  // combining mark may join) go through utf8proc; most text is mostly ASCII.
  std::string normalized;
  normalized.reserve(text.size());
  size_t copied = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t start = pos > copied ? pos - 1 : pos;
    size_t end = pos;
    while (end < text.size() && static_cast<uint8_t>(text[end]) >= 0x80) ++end;
    normalized.append(text, copied, start - copied);
    normalized += normalize_part(text.substr(start, end - start));
    copied = pos = end;
  }
  normalized.append(text, copied, text.size() - copied);
  return normalized;
}

std::string Normalizer::normalize_part(std::string_view text) const {
  std::string current(text);
  for (NormalizationForm form : forms_) {
    utf8proc_uint8_t* mapped = nullptr;
    utf8proc_ssize_t length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(current.data()),
                                           static_cast<utf8proc_ssize_t>(current.size()), &mapped, options_of(form));
    std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(mapped, &std::free);
    require(length >= 0, ErrorKind::Internal, "Unicode normalization failed: {}", utf8proc_errmsg(length));
    current.assign(reinterpret_cast<const char*>(mapped), static_cast<size_t>(length));
  }
  return current;
}

}  // namespace retort
