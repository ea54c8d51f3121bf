// `retort eval classify`: intent accuracy of one or more models on a labelled CSV (BANKING77's
// test.csv), where the prediction is the candidate label with the highest likelihood, with p50/p99
// latency per query and queries/s. Registered under `retort eval` (src/eval/classify.cpp does the work).
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <memory>
#include <set>

#include "cli/commands.h"
#include "cli/flag_checks.h"
#include "cli/model_session.h"
#include "eval/classify.h"
#include "util/error.h"
#include "util/log.h"

namespace retort::cli {

namespace {

struct ClassifyCommand {
  std::vector<std::string> models;
  std::string data;
  std::string labels_file;  // JSON array of the candidate labels; default: the labels in --data
  std::string text_column = "text";
  std::string label_column = "label";
  int64_t limit = 0;
  int threads = 0;
  bool json = false;
};

std::vector<std::string> candidate_labels(const ClassifyCommand& o, const std::vector<LabelledText>& rows) {
  std::vector<std::string> labels;
  if (!o.labels_file.empty()) {
    std::ifstream in(o.labels_file);
    require(in.good(), ErrorKind::NotFound, "cannot open --labels '{}'", o.labels_file);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
      labels = j.get<std::vector<std::string>>();
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorKind::InvalidInput, "--labels {}: expected a JSON array of label strings ({})", o.labels_file, e.what());
    }
  } else {
    std::set<std::string> seen;
    for (const auto& r : rows) seen.insert(r.label);
    labels.assign(seen.begin(), seen.end());
  }
  return labels;
}

// Room for the longest query's prompt and a copy of it per candidate, so each query's candidates
// are scored in one batched forward; capped at 2 GiB (beyond it they are scored in groups).
void size_cache_for_candidates(ModelSession& session, const std::vector<std::string>& labels,
                               const std::vector<LabelledText>& rows) {
  const ModelConfig& config = session.model->config;
  const int64_t block_size = session.cache->block_size();
  const int64_t bytes_per_token = config.num_layers * config.kv_dim() * 2 * int64_t(sizeof(float));
  const int64_t cap = std::max<int64_t>(block_size, (int64_t(2) << 30) / bytes_per_token);
  const int64_t wanted = classify_cache_tokens(session.require_tokenizer(), labels, rows, block_size);
  const int64_t tokens = std::max(session.cache->capacity_tokens(), std::min(wanted, cap));
  if (tokens != session.cache->capacity_tokens()) session.cache = std::make_unique<KvCache>(config, tokens, block_size);
  spdlog::debug("KV cache: {} positions ({:.1f} MiB) for {} candidates", tokens, session.cache->bytes() / 1048576.0,
                labels.size());
}

void run_classify(const ClassifyCommand& o) {
  std::vector<LabelledText> rows = read_labelled_csv(o.data, o.text_column, o.label_column);
  const std::vector<std::string> labels = candidate_labels(o, rows);
  if (o.limit > 0 && int64_t(rows.size()) > o.limit) {
    // An evenly spaced subset, so every part of a label-sorted file is represented.
    std::vector<LabelledText> subset;
    for (int64_t i = 0; i < o.limit; ++i) subset.push_back(rows[size_t(i * int64_t(rows.size()) / o.limit)]);
    rows = std::move(subset);
  }
  nlohmann::json results = nlohmann::json::array();
  if (!o.json) {
    std::printf("| model | accuracy | p50 ms | p99 ms | queries/s |\n|---|---:|---:|---:|---:|\n");
    std::fflush(stdout);
  }
  for (const auto& path : o.models) {
    ModelOptions model_options;
    model_options.model_path = path;
    model_options.threads = o.threads;
    model_options.context = 512;
    ModelSession session = open_model_session(model_options, true);
    size_cache_for_candidates(session, labels, rows);
    const ClassifyResult r = classify(session.transformer(), *session.cache, session.require_tokenizer(), labels, rows);
    // Each query's predicted label, in the order of the evaluated rows: for paired comparisons of models.
    nlohmann::json predicted = nlohmann::json::array();
    for (int32_t p : r.predictions) predicted.push_back(labels[size_t(p)]);
    results.push_back({{"model", path}, {"examples", r.examples}, {"correct", r.correct}, {"accuracy", r.accuracy},
                       {"p50_ms", r.p50_ms}, {"p99_ms", r.p99_ms}, {"queries_per_second", r.queries_per_second},
                       {"labels", labels.size()}, {"predictions", predicted}});
    if (!o.json) {
      std::printf("| %s | %.2f %% (%lld/%lld) | %.1f | %.1f | %.1f |\n", path.c_str(), 100.0 * r.accuracy,
                  static_cast<long long>(r.correct), static_cast<long long>(r.examples), r.p50_ms, r.p99_ms,
                  r.queries_per_second);
      std::fflush(stdout);
    }
  }
  if (o.json) std::printf("%s\n", results.dump(2).c_str());
}

}  // namespace

void add_classify_command(CLI::App& app) {
  CLI::App* eval = app.get_subcommand("eval");
  auto options = std::make_shared<ClassifyCommand>();
  auto* classify = eval->add_subcommand(
      "classify", "Intent accuracy: the most likely of the candidate labels after \"<text>\\nLabel:\"");
  classify->add_option("-m,--model", options->models, "Model directory or GGUF file (repeat to compare several)")
      ->required();
  classify->add_option("--data", options->data, "CSV with a header, e.g. ../shared/data/banking77/test.csv")->required();
  classify->add_option("--labels", options->labels_file, "JSON array of the candidate labels (default: those in --data)");
  classify->add_option("--text-column", options->text_column, "Column of the query text")->capture_default_str();
  classify->add_option("--label-column", options->label_column, "Column of the label (BANKING77: category)")
      ->capture_default_str();
  classify->add_option("--limit", options->limit, "Evaluate an evenly spaced subset of N rows (0: all)");
  classify->add_option("-t,--threads", options->threads, "Worker threads (0: all hardware threads)")
      ->check(integer_at_least(0, "0 = all hardware threads"));
  classify->add_flag("--json", options->json, "Print the results as JSON (with each query's predicted label)");
  classify->callback([options] { run_classify(*options); });
}

}  // namespace retort::cli
