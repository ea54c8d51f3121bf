#include "tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace retort {
namespace {

// The pattern GPT-2 introduced, which the ByteLevel pre-tokenizer applies when use_regex is true.
constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

SplitBehavior parse_behavior(const std::string& name) {
  if (name == "Removed") return SplitBehavior::Removed;
  if (name == "Isolated") return SplitBehavior::Isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (name == "Contiguous") return SplitBehavior::Contiguous;
  fail(ErrorKind::InvalidInput,
       "tokenizer.json: Split behavior \"{}\" is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, "
       "Contiguous",
       name);
}

struct Span {
  size_t begin;
  size_t end;
  bool is_match;
};

// Calls visit(span) for the alternating non-matching and matching spans that cover `text`.
template <typename Visitor>
void for_each_span(const Regex& regex, std::string_view text, Visitor&& visit) {
  size_t previous_end = 0;
  size_t search_from = 0;
  size_t match_begin = 0, match_end = 0;
  while (search_from <= text.size() && regex.find(text, search_from, match_begin, match_end)) {
    if (match_begin == match_end) {
      // An empty match cuts nothing; move on by one character so the search terminates.
      if (match_begin >= text.size()) break;
      size_t length = utf8::valid_char_length(text, match_begin);
      search_from = match_begin + (length == 0 ? 1 : length);
      continue;
    }
    if (match_begin > previous_end) visit(Span{previous_end, match_begin, false});
    visit(Span{match_begin, match_end, true});
    previous_end = match_end;
    search_from = match_end;
  }
  if (previous_end < text.size()) visit(Span{previous_end, text.size(), false});
}

// Applies a split behaviour (the semantics of Hugging Face's SplitDelimiterBehavior) to the spans;
// returns the spans to keep.
std::vector<Span> apply_behavior(std::vector<Span> spans, SplitBehavior behavior) {
  std::vector<Span> kept;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::Isolated:
      return spans;
    case SplitBehavior::Removed:
      for (const Span& span : spans) {
        if (!span.is_match) kept.push_back(span);
      }
      return kept;
    case SplitBehavior::MergedWithPrevious:
      for (const Span& span : spans) {
        if (span.is_match && !previous_match && !kept.empty()) {
          kept.back().end = span.end;
        } else {
          kept.push_back(span);
        }
        previous_match = span.is_match;
      }
      return kept;
    case SplitBehavior::MergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty()) {
          kept.back().begin = it->begin;
        } else {
          kept.push_back(*it);
        }
        previous_match = it->is_match;
      }
      return {kept.rbegin(), kept.rend()};
    case SplitBehavior::Contiguous:
      for (size_t i = 0; i < spans.size(); ++i) {
        if (i > 0 && spans[i].is_match == previous_match) {
          kept.back().end = spans[i].end;
        } else {
          kept.push_back(spans[i]);
        }
        previous_match = spans[i].is_match;
      }
      return kept;
  }
  return spans;
}

}  // namespace

struct PreTokenizer::Step {
  std::unique_ptr<Regex> regex;  // null for a ByteLevel step that does not split
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

PreTokenizer PreTokenizer::from_json(const nlohmann::json& config) {
  PreTokenizer pre_tokenizer;
  pre_tokenizer.append_steps(config);
  return pre_tokenizer;
}

void PreTokenizer::append_steps(const nlohmann::json& config) {
  if (config.is_null()) return;
  require(config.is_object() && config.contains("type") && config["type"].is_string(), ErrorKind::InvalidInput,
          "tokenizer.json: expected the pre_tokenizer to be null or an object with a \"type\", found {}",
          config.dump().substr(0, 200));
  const std::string type = config["type"].get<std::string>();
  if (type == "Sequence") {
    require(config.contains("pretokenizers") && config["pretokenizers"].is_array(), ErrorKind::InvalidInput,
            "tokenizer.json: a Sequence pre_tokenizer needs a \"pretokenizers\" array");
    for (const auto& step : config["pretokenizers"]) append_steps(step);
  } else if (type == "Split") {
    const auto& pattern = config.value("pattern", nlohmann::json());
    Step step;
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      step.regex = std::make_unique<Regex>(pattern["Regex"].get<std::string>());
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      step.regex = std::make_unique<Regex>(regex_escape(pattern["String"].get<std::string>()));
    } else {
      fail(ErrorKind::InvalidInput, "tokenizer.json: a Split pre_tokenizer needs \"pattern\": {{\"Regex\": ...}} or "
                                    "{{\"String\": ...}}, found {}",
           pattern.dump().substr(0, 200));
    }
    step.behavior = parse_behavior(config.value("behavior", std::string("Isolated")));
    step.invert = config.value("invert", false);
    steps_.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    has_byte_level_ = true;
    Step step;
    step.add_prefix_space = config.value("add_prefix_space", false);
    if (config.value("use_regex", true)) step.regex = std::make_unique<Regex>(kGpt2Pattern);
    if (step.regex || step.add_prefix_space) steps_.push_back(std::move(step));
  } else {
    fail(ErrorKind::Unsupported,
         "tokenizer.json: pre_tokenizer type \"{}\" is not supported (retort implements Split, ByteLevel and "
         "Sequence, as byte-level BPE tokenizers use)",
         type);
  }
}

void PreTokenizer::split(std::string_view text, std::deque<std::string>& storage, const PieceSink& sink) const {
  if (!text.empty()) split_from(0, text, storage, sink);
}

// Pieces go through the steps depth-first, so no list of all pieces of a long text is built.
void PreTokenizer::split_from(size_t step_index, std::string_view piece, std::deque<std::string>& storage,
                              const PieceSink& sink) const {
  if (step_index == steps_.size()) {
    sink(piece);
    return;
  }
  const Step& step = steps_[step_index];
  if (step.add_prefix_space && piece.front() != ' ') {
    std::string& prefixed = storage.emplace_back();
    prefixed.reserve(piece.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(piece);
    piece = prefixed;
  }
  if (!step.regex) {
    split_from(step_index + 1, piece, storage, sink);
    return;
  }
  const auto forward = [&](const Span& span) {
    if (span.end > span.begin) split_from(step_index + 1, piece.substr(span.begin, span.end - span.begin), storage, sink);
  };
  if (step.behavior == SplitBehavior::Isolated) {  // keeps every span on its own, inverted or not
    for_each_span(*step.regex, piece, forward);
    return;
  }
  std::vector<Span> spans;
  for_each_span(*step.regex, piece, [&](const Span& span) { spans.push_back(span); });
  if (step.invert) {
    for (Span& span : spans) span.is_match = !span.is_match;
  }
  for (const Span& span : apply_behavior(std::move(spans), step.behavior)) forward(span);
}

}  // namespace retort
