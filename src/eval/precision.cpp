#include "eval/precision.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/model_loader.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort {

namespace {

namespace fs = std::filesystem;

uint64_t model_file_bytes(const std::string& path) {
  if (!fs::is_directory(path)) return fs::file_size(path);
  uint64_t bytes = 0;
  // The weights only: a training checkpoint also holds optimizer.safetensors (Adam's moments).
  for (const auto& entry : fs::directory_iterator(path))
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors" &&
        entry.path().filename().string().rfind("model", 0) == 0)
      bytes += entry.file_size();
  return bytes;
}

// log softmax of one row, in double, stored as f32.
void log_softmax(std::span<const float> logits, float* out) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  for (float logit : logits) total += std::exp(static_cast<double>(logit - max_logit));
  const double log_total = std::log(total);
  for (size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<float>(logits[i] - max_logit - log_total);
}

// The reference's log-probabilities for every scored position, a window at a time, in a scratch
// file: they are compared with each quantized model's after the reference has left memory.
class ReferenceLogProbs {
 public:
  explicit ReferenceLogProbs(fs::path path) : path_(std::move(path)) {
    file_.open(path_, std::ios::binary | std::ios::in | std::ios::out | std::ios::trunc);
    require(file_.is_open(), ErrorKind::Io, "cannot create the scratch file {}", path_.string());
  }
  ~ReferenceLogProbs() {
    file_.close();
    std::error_code ignored;
    fs::remove(path_, ignored);
  }
  void append(const std::vector<float>& rows) {
    window_values_ = rows.size();
    file_.seekp(0, std::ios::end);
    file_.write(reinterpret_cast<const char*>(rows.data()), static_cast<std::streamsize>(rows.size() * sizeof(float)));
    require(file_.good(), ErrorKind::Io, "writing {} failed (disk full?)", path_.string());
  }
  void read(int64_t window, std::vector<float>& rows) {
    rows.resize(window_values_);
    file_.seekg(static_cast<std::streamoff>(static_cast<size_t>(window) * window_values_ * sizeof(float)));
    file_.read(reinterpret_cast<char*>(rows.data()), static_cast<std::streamsize>(rows.size() * sizeof(float)));
    require(file_.good(), ErrorKind::Io, "reading window {} back from {} failed", window, path_.string());
  }

 private:
  fs::path path_;
  std::fstream file_;
  size_t window_values_ = 0;
};

// Per scored position: the model's NLL of the true next token, KL(reference ‖ model) and whether
// both put the same token first.
struct PositionScore {
  double nll = 0;
  double kl = 0;
  bool same_top1 = true;
};

PositionScore score_position(std::span<const float> logits, const float* reference_log_probs, int32_t target,
                             std::vector<float>& log_probs) {
  log_probs.resize(logits.size());
  log_softmax(logits, log_probs.data());
  PositionScore score;
  score.nll = -static_cast<double>(log_probs[static_cast<size_t>(target)]);
  size_t model_top = 0, reference_top = 0;
  for (size_t v = 0; v < logits.size(); ++v) {
    const double reference = reference_log_probs[v];
    score.kl += std::exp(reference) * (reference - static_cast<double>(log_probs[v]));
    if (log_probs[v] > log_probs[model_top]) model_top = v;
    if (reference_log_probs[v] > reference_log_probs[reference_top]) reference_top = v;
  }
  score.kl = std::max(0.0, score.kl);  // KL ≥ 0; a hair below is rounding, not information
  score.same_top1 = model_top == reference_top;
  return score;
}

struct Totals {
  double nll = 0, nll_squares = 0, kl = 0;
  int64_t agreements = 0, positions = 0, windows = 0;
};

// One model over every window: with `store`, it is the reference and records its log-probs;
// otherwise it is compared against them.
Totals evaluate_model(Transformer& model, std::span<const int32_t> tokens, const PrecisionOptions& options,
                      ReferenceLogProbs& reference, bool is_reference, const std::string& label,
                      const PrecisionProgress& progress) {
  Totals totals;
  std::vector<float> reference_rows;
  std::vector<PositionScore> scores;
  for_each_scored_window(model, tokens, options.perplexity, [&](const ScoredWindow& window) {
    const size_t vocab = static_cast<size_t>(window.vocab);
    const size_t positions = window.targets.size();
    if (is_reference) {
      reference_rows.resize(positions * vocab);
      thread_pool().parallel_for(positions, 1, [&](size_t begin, size_t end) {
        for (size_t p = begin; p < end; ++p) log_softmax(window.logits.subspan(p * vocab, vocab), reference_rows.data() + p * vocab);
      });
      reference.append(reference_rows);
    } else {
      reference.read(window.index, reference_rows);
    }
    scores.assign(positions, {});
    thread_pool().parallel_for(positions, 1, [&](size_t begin, size_t end) {
      thread_local std::vector<float> log_probs;
      for (size_t p = begin; p < end; ++p)
        scores[p] = score_position(window.logits.subspan(p * vocab, vocab), reference_rows.data() + p * vocab,
                                   window.targets[p], log_probs);
    });
    for (const PositionScore& score : scores) {  // in order, so the sums do not depend on threads
      totals.nll += score.nll;
      totals.nll_squares += score.nll * score.nll;
      totals.kl += score.kl;
      totals.agreements += score.same_top1 ? 1 : 0;
      ++totals.positions;
    }
    ++totals.windows;
    if (progress) progress(fmt::format("{}: window {}", label, window.index + 1));
  });
  return totals;
}

PrecisionRow make_row(const std::string& label, const std::string& path, const Totals& totals, const SpeedResult& speed) {
  PerplexityResult perplexity;
  perplexity.scored_tokens = totals.positions;
  perplexity = finish_perplexity(perplexity, totals.nll, totals.nll_squares);
  PrecisionRow row;
  row.label = label;
  row.path = path;
  row.file_bytes = model_file_bytes(path);
  row.perplexity = perplexity.perplexity;
  row.perplexity_error = perplexity.standard_error;
  const auto positions = static_cast<double>(std::max<int64_t>(totals.positions, 1));
  row.mean_kl = totals.kl / positions;
  row.top1_agreement = static_cast<double>(totals.agreements) / positions;
  row.speed = speed;
  return row;
}

}  // namespace

PrecisionReport compare_models(const ModelToCompare& reference, const std::vector<ModelToCompare>& others,
                               const PrecisionOptions& options, std::span<const int32_t> text_tokens, Backend& backend,
                               const PrecisionProgress& progress) {
  require(options.prompt_tokens >= 1 && static_cast<size_t>(options.prompt_tokens) <= text_tokens.size(),
          ErrorKind::InvalidInput, "the speed prompt needs {} tokens of text; the text has {}", options.prompt_tokens,
          text_tokens.size());
  fs::create_directories(options.work_dir);
  const auto prompt = text_tokens.first(static_cast<size_t>(options.prompt_tokens));

  PrecisionReport report;
  report.backend = backend.name();
  report.context = options.perplexity.context;
  ReferenceLogProbs reference_log_probs(fs::path(options.work_dir) / "reference-logprobs.f32.tmp");
  int64_t reference_vocab = 0;

  auto evaluate = [&](const ModelToCompare& model_to_compare, bool is_reference) {
    const std::string& label = model_to_compare.label;
    if (progress) progress(fmt::format("{}: loading {}", label, model_to_compare.path));
    auto model = load_model(model_to_compare.path, backend);
    const int64_t vocab = model->config.vocab_size;
    if (is_reference) reference_vocab = vocab;
    require(vocab == reference_vocab, ErrorKind::InvalidInput,
            "{} has a vocabulary of {} entries, the reference {} has {}: KL and top-1 agreement compare whole "
            "next-token distributions, so every model needs the reference's vocabulary", model_to_compare.path, vocab,
            reference.path, reference_vocab);
    const Totals totals =
        evaluate_model(*model->transformer, text_tokens, options, reference_log_probs, is_reference, label, progress);
    if (progress) progress(fmt::format("{}: timing prefill and decode", label));
    const SpeedResult speed = measure_speed(*model->transformer, prompt, options.decode_tokens);
    report.scored_positions = totals.positions;
    report.windows = totals.windows;
    report.rows.push_back(make_row(label, model_to_compare.path, totals, speed));
  };
  evaluate(reference, true);
  for (const ModelToCompare& other : others) evaluate(other, false);
  return report;
}

PrecisionReport measure_precision(const PrecisionOptions& options, std::span<const int32_t> text_tokens,
                                  Backend& backend, const PrecisionProgress& progress) {
  require(!options.recipes.empty(), ErrorKind::InvalidInput, "no weight types to compare: pass e.g. --types q8_0,q4_k");
  fs::create_directories(options.work_dir);
  const bool reference_is_gguf = !fs::is_directory(options.reference_path);
  std::vector<ModelToCompare> quantized;
  for (QuantRecipe recipe : options.recipes) {
    const std::string name = recipe_name(recipe);
    const std::string path = (fs::path(options.work_dir) / ("model-" + name + ".gguf")).string();
    if (progress) progress(fmt::format("{}: writing {}", name, path));
    if (reference_is_gguf)
      quantize_gguf(options.reference_path, path, recipe);
    else
      convert_hf_to_gguf(options.reference_path, path, recipe);
    quantized.push_back({name, path});
  }
  return compare_models({"reference", options.reference_path}, quantized, options, text_tokens, backend, progress);
}

std::string precision_markdown(const PrecisionReport& report) {
  const PrecisionRow& reference = report.rows.front();
  std::string text = fmt::format("| type | size (MiB) | size ÷ ref | perplexity | mean KL (nats) | top-1 agreement | "
                                 "prefill tok/s | decode tok/s | decode ÷ ref |\n");
  text += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const PrecisionRow& row : report.rows) {
    text += fmt::format("| {} | {:.1f} | {:.3f} | {:.4f} ± {:.4f} | {:.6f} | {:.2f}% | {:.1f} | {:.2f} | {:.2f}× |\n",
                        row.label, static_cast<double>(row.file_bytes) / (1024.0 * 1024.0),
                        static_cast<double>(row.file_bytes) / static_cast<double>(std::max<uint64_t>(reference.file_bytes, 1)),
                        row.perplexity, row.perplexity_error, row.mean_kl, 100.0 * row.top1_agreement,
                        row.speed.prefill_tokens_per_second, row.speed.decode_tokens_per_second,
                        row.speed.decode_tokens_per_second / std::max(reference.speed.decode_tokens_per_second, 1e-9));
  }
  text += fmt::format("\n{} windows of {} tokens ({} scored positions); backend {}; prefill {} tokens, decode {} tokens.\n",
                      report.windows, report.context, report.scored_positions, report.backend,
                      reference.speed.prompt_tokens, reference.speed.decode_tokens);
  return text;
}

std::string precision_json(const PrecisionReport& report) {
  nlohmann::json rows = nlohmann::json::array();
  for (const PrecisionRow& row : report.rows) {
    rows.push_back({{"type", row.label},
                    {"path", row.path},
                    {"file_bytes", row.file_bytes},
                    {"perplexity", row.perplexity},
                    {"perplexity_standard_error", row.perplexity_error},
                    {"mean_kl", row.mean_kl},
                    {"top1_agreement", row.top1_agreement},
                    {"prefill_tokens_per_second", row.speed.prefill_tokens_per_second},
                    {"decode_tokens_per_second", row.speed.decode_tokens_per_second},
                    {"prompt_tokens", row.speed.prompt_tokens},
                    {"decode_tokens", row.speed.decode_tokens}});
  }
  const nlohmann::json json = {{"context", report.context},
                               {"windows", report.windows},
                               {"scored_positions", report.scored_positions},
                               {"backend", report.backend},
                               {"rows", rows}};
  return json.dump(2) + "\n";
}

}  // namespace retort
