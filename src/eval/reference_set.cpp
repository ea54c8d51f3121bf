#include "eval/reference_set.h"

#include <nlohmann/json.hpp>

#include "engine/generation.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort::eval {

std::vector<std::string> read_lines(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    start = end + 1;
  }
  return lines;
}

PromptSet read_prompt_set(const std::string& path) {
  PromptSet set;
  const std::vector<std::string> lines = read_lines(path);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find_first_not_of(" \t") == std::string::npos) continue;
    const auto where = fmt::format("{}:{}", path, i + 1);
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(lines[i]);
    } catch (const nlohmann::json::exception&) {
      fail(ErrorKind::InvalidInput, "{}: not valid JSON; expected {{\"prompt\": \"...\", \"reference\": \"...\"}}", where);
    }
    require(row.is_object() && row.contains("prompt") && row["prompt"].is_string(), ErrorKind::InvalidInput,
            "{}: expected an object with a string \"prompt\"", where);
    std::vector<std::string> refs;
    if (row.contains("reference") && row["reference"].is_string()) refs.push_back(row["reference"].get<std::string>());
    if (row.contains("references") && row["references"].is_array())
      for (const auto& r : row["references"]) {
        require(r.is_string(), ErrorKind::InvalidInput, "{}: \"references\" must hold strings", where);
        refs.push_back(r.get<std::string>());
      }
    require(!refs.empty(), ErrorKind::InvalidInput, "{}: no \"reference\" (a string) or \"references\" (strings)", where);
    if (set.references.empty()) set.references.resize(refs.size());
    require(refs.size() == set.references.size(), ErrorKind::InvalidInput,
            "{}: {} references where the lines before have {}; give every line as many", where, refs.size(),
            set.references.size());
    set.prompts.push_back(row["prompt"].get<std::string>());
    for (size_t r = 0; r < refs.size(); ++r) set.references[r].push_back(std::move(refs[r]));
  }
  require(!set.prompts.empty(), ErrorKind::InvalidInput, "{}: no prompts in it", path);
  return set;
}

std::vector<std::string> greedy_line_replies(Transformer& model, KvCache& cache, const Tokenizer& tokenizer,
                                             const std::vector<std::string>& prompts, int max_tokens,
                                             const std::function<void(size_t)>& on_progress) {
  GenerationOptions generation;
  generation.sampling.temperature = 0;
  generation.max_tokens = max_tokens;
  generation.stop_strings = {"\n"};  // one sentence per reference line
  std::vector<std::string> replies;
  for (size_t i = 0; i < prompts.size(); ++i) {
    CachedSequence sequence;  // each prompt from an empty cache
    std::string text;
    generate(model, cache, sequence, tokenizer, tokenizer.encode(prompts[i], true), generation,
             [&](std::string_view piece) { text += piece; });
    cache.release(sequence.kv);
    replies.push_back(std::move(text));
    if (on_progress) on_progress(i + 1);
  }
  return replies;
}

}  // namespace retort::eval
