#include "eval/classify.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "util/error.h"

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

double log_softmax_at(const float* row, int64_t V, int32_t id) {
  float max = row[0];
  for (int64_t v = 1; v < V; ++v) max = std::max(max, row[v]);
  double sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v] - max));
  return double(row[id] - max) - std::log(sum);
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
                                    const std::vector<std::vector<int32_t>>& candidates) {
  const int64_t V = model.config().vocab_size;
  std::vector<float> logits;
  KvSequence sequence;
  require(cache.reserve(sequence, int64_t(prompt.size())), ErrorKind::OutOfRange, "the KV cache is too small");
  SequenceChunk chunk{&sequence, prompt, LogitsWanted::Last};
  model.forward({&chunk, 1}, cache, logits);
  const std::vector<float> prompt_logits(logits.begin(), logits.begin() + V);
  const int64_t prompt_length = sequence.length;
  std::vector<double> scores;
  for (const auto& ids : candidates) {
    double score = log_softmax_at(prompt_logits.data(), V, ids[0]);
    if (ids.size() > 1) {
      // Continue from the cached prompt: the positions after it are overwritten by each candidate.
      sequence.length = prompt_length;
      require(cache.reserve(sequence, prompt_length + int64_t(ids.size()) - 1), ErrorKind::OutOfRange,
              "the KV cache is too small");
      SequenceChunk rest{&sequence, std::span<const int32_t>(ids.data(), ids.size() - 1), LogitsWanted::All};
      model.forward({&rest, 1}, cache, logits);
      for (size_t i = 1; i < ids.size(); ++i) score += log_softmax_at(logits.data() + (i - 1) * V, V, ids[i]);
    }
    scores.push_back(score);
  }
  cache.release(sequence);
  return scores;
}

ClassifyResult classify(Transformer& model, KvCache& cache, const Tokenizer& tokenizer,
                        const std::vector<std::string>& labels, const std::vector<LabelledText>& examples) {
  using Clock = std::chrono::steady_clock;
  require(!labels.empty(), ErrorKind::InvalidInput, "no candidate labels");
  std::map<std::string, int32_t> index;
  std::vector<std::vector<int32_t>> candidates;
  for (const auto& l : labels) {
    index.emplace(l, static_cast<int32_t>(candidates.size()));
    std::vector<int32_t> ids = tokenizer.encode(" " + l, false);
    if (!tokenizer.eos_ids().empty()) ids.push_back(tokenizer.eos_ids().front());
    candidates.push_back(std::move(ids));
  }
  ClassifyResult result;
  std::vector<double> latencies;
  const auto start = Clock::now();
  for (const auto& example : examples) {
    auto found = index.find(example.label);
    require(found != index.end(), ErrorKind::InvalidInput, "label '{}' of \"{}\" is not among the {} candidates",
            example.label, example.text, labels.size());
    const auto t0 = Clock::now();
    std::vector<int32_t> prompt = tokenizer.encode(example.text + "\nLabel:", true);
    if (!tokenizer.suffix_ids().empty()) prompt.resize(prompt.size() - tokenizer.suffix_ids().size());
    const std::vector<double> scores = score_candidates(model, cache, prompt, candidates);
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
