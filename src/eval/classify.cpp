#include "eval/classify.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <span>
#include <sstream>

#include "kernels/cpu/softmax_kernels.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort {

namespace {

// One CSV record (fields may be quoted, with "" for a quote and newlines inside quotes); false at
// the end of the input. `line` counts physical lines.
bool read_record(std::istream& in, std::vector<std::string>& fields, int64_t& line, const std::string& path) {
  fields.assign(1, "");
  int c = in.get();
  if (c == EOF) return false;
  bool quoted = false;
  const int64_t start = line + 1;
  for (; c != EOF; c = in.get()) {
    const char ch = static_cast<char>(c);
    if (quoted) {
      if (ch == '"') {
        if (in.peek() == '"') fields.back() += static_cast<char>(in.get());
        else quoted = false;
      } else {
        if (ch == '\n') ++line;
        fields.back() += ch;
      }
    } else if (ch == '"') {
      quoted = true;
    } else if (ch == ',') {
      fields.emplace_back();
    } else if (ch == '\n') {
      break;
    } else if (ch != '\r') {
      fields.back() += ch;
    }
  }
  ++line;
  require(!quoted, ErrorKind::InvalidInput, "{}:{}: a quoted field is not closed", path, start);
  return true;
}

// log Σ_v exp(row[v]), the normaliser of a row's log-softmax: the row's maximum and Σ exp in the
// vectorised kernels (the sum in double); a scalar std::exp loop over a 151,936-entry vocabulary
// cost more than the LM head.
double log_sum_exp(const float* row, int64_t V) {
  const auto& kernels = cpu::active_softmax_kernels();
  const float max = kernels.row_max(row, V);
  return double(max) + std::log(kernels.sum_exp(row, V, max, 1.0f));
}

// Candidate rows' logits per batched forward stay under this many floats (256 MiB), so a long
// label list does not allocate [every row × vocabulary] at once.
constexpr int64_t kMaxGroupLogits = int64_t(1) << 26;

// Gives the sequences' blocks back however the scope is left (a forward throws on a prompt longer
// than the model's positions).
struct ReleaseOnExit {
  KvCache& cache;
  std::vector<KvSequence>& sequences;
  ~ReleaseOnExit() {
    for (auto& sequence : sequences) cache.release(sequence);
  }
};

// Adds to scores[c] the log-probabilities of tokens 1.. of each candidate c in `group`, in one
// forward: each candidate continues from its own copy of the prompt's cached positions, so the LM
// head is one matmul over every candidate's rows instead of one pass over its weights per candidate.
void score_group(Transformer& model, KvCache& cache, const KvSequence& prompt,
                 const std::vector<std::vector<int32_t>>& candidates, std::span<const size_t> group,
                 std::vector<double>& scores, std::vector<float>& logits) {
  std::vector<KvSequence> sequences(group.size());
  ReleaseOnExit release{cache, sequences};
  std::vector<SequenceChunk> chunks;
  std::vector<std::pair<size_t, int32_t>> row_targets;  // per logits row: candidate, next token
  for (size_t g = 0; g < group.size(); ++g) {
    const std::vector<int32_t>& ids = candidates[group[g]];
    require(cache.reserve(sequences[g], prompt.length + int64_t(ids.size()) - 1), ErrorKind::Internal,
            "the KV cache has fewer free blocks than planned for the candidates");
    cache.copy_prefix(prompt, sequences[g], prompt.length);
    chunks.push_back({&sequences[g], std::span<const int32_t>(ids.data(), ids.size() - 1), LogitsWanted::All});
    for (size_t i = 1; i < ids.size(); ++i) row_targets.emplace_back(group[g], ids[i]);
  }
  model.forward(chunks, cache, logits);
  const int64_t V = model.config().vocab_size;
  std::vector<double> row_scores(row_targets.size());
  thread_pool().parallel_for(row_targets.size(), 1, [&](size_t begin, size_t end) {
    for (size_t r = begin; r < end; ++r) {
      const float* row = logits.data() + r * size_t(V);
      row_scores[r] = double(row[row_targets[r].second]) - log_sum_exp(row, V);
    }
  });
  // Summed in token order, as a candidate evaluated alone would be.
  for (size_t r = 0; r < row_targets.size(); ++r) scores[row_targets[r].first] += row_scores[r];
}

// Scores every candidate's tokens after the first, in as few groups as the cache's free blocks
// (and kMaxGroupLogits) allow.
void score_continuations(Transformer& model, KvCache& cache, const KvSequence& prompt,
                         const std::vector<std::vector<int32_t>>& candidates, std::vector<double>& scores,
                         std::vector<float>& logits) {
  std::vector<size_t> pending;  // candidates with more than one token
  for (size_t c = 0; c < candidates.size(); ++c)
    if (candidates[c].size() > 1) pending.push_back(c);
  const int64_t max_rows = std::max<int64_t>(1, kMaxGroupLogits / model.config().vocab_size);
  for (size_t begin = 0; begin < pending.size();) {
    int64_t free_blocks = cache.free_blocks(), rows = 0;
    size_t end = begin;
    for (; end < pending.size(); ++end) {
      const auto length = int64_t(candidates[pending[end]].size());
      const int64_t blocks = cache.blocks_needed(KvSequence{}, prompt.length + length - 1);
      if (blocks > free_blocks || (end > begin && rows + length - 1 > max_rows)) break;
      free_blocks -= blocks;
      rows += length - 1;
    }
    require(end > begin, ErrorKind::OutOfRange,
            "the KV cache ({} positions) is too small for a {}-token prompt and a {}-token candidate",
            cache.capacity_tokens(), prompt.length, candidates[pending[begin]].size());
    score_group(model, cache, prompt, candidates, std::span(pending).subspan(begin, end - begin), scores, logits);
    begin = end;
  }
}

}  // namespace

std::vector<LabelledText> read_labelled_csv(const std::string& path, const std::string& text_column,
                                            const std::string& label_column) {
  std::ifstream in(path, std::ios::binary);
  require(in.good(), ErrorKind::NotFound, "cannot open '{}'", path);
  std::vector<std::string> fields;
  int64_t line = 0;
  require(read_record(in, fields, line, path), ErrorKind::InvalidInput, "{}: empty file; expected a header line", path);
  auto column = [&](const std::string& name) {
    auto it = std::find(fields.begin(), fields.end(), name);
    require(it != fields.end(), ErrorKind::InvalidInput, "{}:1: the header has no '{}' column (it has: {})", path,
            name, fmt::join(fields, ", "));
    return static_cast<size_t>(it - fields.begin());
  };
  const size_t text = column(text_column), label = column(label_column), width = fields.size();
  std::vector<LabelledText> rows;
  while (read_record(in, fields, line, path)) {
    if (fields.size() == 1 && fields[0].empty()) continue;
    require(fields.size() == width, ErrorKind::InvalidInput, "{}:{}: {} fields, the header has {}", path, line,
            fields.size(), width);
    rows.push_back({fields[text], fields[label]});
  }
  return rows;
}

std::vector<double> score_candidates(Transformer& model, KvCache& cache, const std::vector<int32_t>& prompt,
                                    const std::vector<std::vector<int32_t>>& candidates, CandidateScratch& scratch) {
  const int64_t V = model.config().vocab_size;
  std::vector<KvSequence> prompt_sequence(1);
  ReleaseOnExit release{cache, prompt_sequence};
  require(cache.reserve(prompt_sequence[0], int64_t(prompt.size())), ErrorKind::OutOfRange,
          "the KV cache ({} positions) is too small for a {}-token prompt", cache.capacity_tokens(), prompt.size());
  SequenceChunk chunk{&prompt_sequence[0], prompt, LogitsWanted::Last};
  std::vector<float>& logits = scratch.prompt_logits;
  model.forward({&chunk, 1}, cache, logits);
  const double prompt_log_sum = log_sum_exp(logits.data(), V);
  std::vector<double> scores;
  for (const auto& ids : candidates) {
    require(!ids.empty(), ErrorKind::InvalidInput, "a candidate label has no tokens");
    scores.push_back(double(logits[size_t(ids[0])]) - prompt_log_sum);
  }
  score_continuations(model, cache, prompt_sequence[0], candidates, scores, scratch.candidate_logits);
  return scores;
}

std::vector<double> score_candidates(Transformer& model, KvCache& cache, const std::vector<int32_t>& prompt,
                                    const std::vector<std::vector<int32_t>>& candidates) {
  CandidateScratch scratch;
  return score_candidates(model, cache, prompt, candidates, scratch);
}

std::vector<std::vector<int32_t>> candidate_tokens(const Tokenizer& tokenizer, const std::vector<std::string>& labels) {
  std::vector<std::vector<int32_t>> candidates;
  for (const auto& label : labels) {
    std::vector<int32_t> ids = tokenizer.encode(" " + label, false);
    if (!tokenizer.eos_ids().empty()) ids.push_back(tokenizer.eos_ids().front());
    candidates.push_back(std::move(ids));
  }
  return candidates;
}

std::vector<int32_t> classify_prompt(const Tokenizer& tokenizer, const std::string& text) {
  std::vector<int32_t> prompt = tokenizer.encode(text + "\nLabel:", true);
  if (!tokenizer.suffix_ids().empty()) prompt.resize(prompt.size() - tokenizer.suffix_ids().size());
  return prompt;
}

int64_t classify_cache_tokens(const Tokenizer& tokenizer, const std::vector<std::string>& labels,
                              const std::vector<LabelledText>& examples, int64_t block_size) {
  int64_t longest_prompt = 1;
  for (const auto& example : examples)
    longest_prompt = std::max(longest_prompt, int64_t(classify_prompt(tokenizer, example.text).size()));
  auto blocks = [&](int64_t positions) { return (positions + block_size - 1) / block_size; };
  int64_t total = blocks(longest_prompt);
  for (const auto& ids : candidate_tokens(tokenizer, labels))
    if (ids.size() > 1) total += blocks(longest_prompt + int64_t(ids.size()) - 1);
  return total * block_size;
}

ClassifyResult classify(Transformer& model, KvCache& cache, const Tokenizer& tokenizer,
                        const std::vector<std::string>& labels, const std::vector<LabelledText>& examples) {
  using Clock = std::chrono::steady_clock;
  require(!labels.empty(), ErrorKind::InvalidInput, "no candidate labels");
  std::map<std::string, int32_t> index;
  for (size_t i = 0; i < labels.size(); ++i) index.emplace(labels[i], static_cast<int32_t>(i));
  const std::vector<std::vector<int32_t>> candidates = candidate_tokens(tokenizer, labels);
  ClassifyResult result;
  std::vector<double> latencies;
  CandidateScratch scratch;
  const auto start = Clock::now();
  for (const auto& example : examples) {
    auto found = index.find(example.label);
    require(found != index.end(), ErrorKind::InvalidInput, "label '{}' of \"{}\" is not among the {} candidates",
            example.label, example.text, labels.size());
    const auto t0 = Clock::now();
    const std::vector<double> scores = score_candidates(model, cache, classify_prompt(tokenizer, example.text),
                                                        candidates, scratch);
    const auto best_label = static_cast<int32_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
    latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    result.predictions.push_back(best_label);
    result.correct += best_label == found->second ? 1 : 0;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.examples = static_cast<int64_t>(examples.size());
  result.accuracy = result.examples > 0 ? double(result.correct) / double(result.examples) : 0.0;
  result.queries_per_second = seconds > 0 ? double(result.examples) / seconds : 0.0;
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    auto pct = [&](double p) { return latencies[std::min(latencies.size() - 1, size_t(p * double(latencies.size())))]; };
    result.p50_ms = pct(0.50);
    result.p99_ms = pct(0.99);
  }
  return result;
}

}  // namespace retort
