#include "eval/pipeline_evaluation.h"

#include <filesystem>
#include <fstream>

#include "eval/classify.h"
#include "eval/draft_speedup.h"
#include "eval/reference_set.h"
#include "eval/text_metrics.h"
#include "eval/precision.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/kv_cache.h"
#include "model/model_loader.h"
#include "tokenizer/tokenizer.h"
#include "util/mapped_file.h"
#include "util/error.h"
#include "util/log.h"
#include "util/thread_pool.h"

namespace retort {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The models in report order, the teacher first (it is the reference for KL and agreement).
std::vector<ModelToCompare> pipeline_models(const json& stages) {
  std::vector<ModelToCompare> models{{"teacher", stages["teacher"]["model"]},
                                     {"student (distilled)", stages["student"]["model"]}};
  if (stages.contains("baseline")) models.push_back({"student (hard labels only)", stages["baseline"]["model"]});
  for (const json& quantized : stages["quantize"]["models"])
    models.push_back({"student (distilled) " + quantized["type"].get<std::string>(), quantized["path"]});
  return models;
}

std::vector<LabelledText> classify_rows(const PipelineClassifyConfig& k) {
  std::vector<LabelledText> rows = read_labelled_csv(k.data, k.text_column, k.label_column);
  if (k.limit <= 0 || int64_t(rows.size()) <= k.limit) return rows;
  std::vector<LabelledText> subset;  // evenly spaced, as `retort eval classify --limit` takes them
  for (int64_t i = 0; i < k.limit; ++i) subset.push_back(rows[size_t(i * int64_t(rows.size()) / k.limit)]);
  return subset;
}

std::vector<std::string> classify_labels(const PipelineClassifyConfig& k) {
  std::ifstream in(k.labels);
  require(in.good(), ErrorKind::NotFound, "evaluate.classify.labels: cannot open '{}'", k.labels);
  try {
    return json::parse(in).get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    fail(ErrorKind::InvalidInput, "evaluate.classify.labels {}: expected a JSON array of label strings ({})", k.labels,
         e.what());
  }
}

json classify_model(const std::string& path, const Tokenizer& tokenizer, const std::vector<std::string>& labels,
                    const std::vector<LabelledText>& rows, Backend& backend) {
  auto model = load_model(path, backend);
  KvCache cache(model->config, std::min<int64_t>(model->config.max_positions, 1024));
  const ClassifyResult r = classify(*model->transformer, cache, tokenizer, labels, rows);
  return {{"accuracy", r.accuracy}, {"examples", r.examples}, {"correct", r.correct}, {"p50_ms", r.p50_ms},
          {"p99_ms", r.p99_ms}, {"queries_per_second", r.queries_per_second}};
}

// Prompts for the draft measurement: `count` windows of `length` tokens spread over the held-out text.
std::vector<std::vector<int32_t>> draft_prompts(const std::vector<int32_t>& tokens, int64_t length, int count) {
  std::vector<std::vector<int32_t>> prompts;
  if (static_cast<int64_t>(tokens.size()) < length || length < 1) return prompts;
  const int64_t span = static_cast<int64_t>(tokens.size()) - length;
  for (int i = 0; i < count; ++i) {
    const auto begin = tokens.begin() + span * i / count;
    prompts.emplace_back(begin, begin + length);
  }
  return prompts;
}

// Each model after the teacher drafting for it: acceptance and the teacher's decode speed-up.
void add_draft_measurements(json& rows, const std::vector<int32_t>& tokens, const PipelineConfig& c,
                            const Tokenizer& tokenizer, Backend& backend) {
  constexpr int kDraftTokens = 4;
  const auto prompts = draft_prompts(tokens, c.prompt_tokens, 4);
  if (prompts.empty() || c.decode_tokens < 1) return;
  auto teacher = load_model(rows[0]["path"], backend);
  for (size_t i = 1; i < rows.size(); ++i) {
    auto draft = load_model(rows[i]["path"], backend);
    const DraftSpeedup d = measure_draft_speedup(*teacher->transformer, *draft->transformer, tokenizer, prompts,
                                                 static_cast<int>(c.decode_tokens), kDraftTokens);
    rows[i]["draft_for_teacher"] = {{"draft_tokens", d.draft_tokens}, {"acceptance_rate", d.acceptance_rate},
                                    {"tokens_per_forward", d.tokens_per_forward},
                                    {"teacher_decode_tokens_per_second", d.decode_tokens_per_second},
                                    {"teacher_alone_decode_tokens_per_second", d.alone_decode_tokens_per_second},
                                    {"speedup", d.speedup()}};
    spdlog::info("evaluate: {} drafting for the teacher: {:.0f} % accepted, {:.2f} tokens per forward, {:.2f}x",
                 rows[i]["label"].get<std::string>(), 100.0 * d.acceptance_rate, d.tokens_per_forward, d.speedup());
  }
}

// BLEU and chrF of each model's greedy replies to the held-out prompts.
void add_bleu(json& rows, const PipelineBleuConfig& b, const Tokenizer& tokenizer, Backend& backend) {
  const eval::PromptSet set = eval::read_prompt_set(b.data);
  for (json& row : rows) {
    auto model = load_model(row["path"], backend);
    KvCache cache(model->config, model->config.max_positions);
    const std::vector<std::string> replies =
        eval::greedy_line_replies(*model->transformer, cache, tokenizer, set.prompts, b.max_tokens);
    const eval::BleuScore bleu = eval::corpus_bleu(replies, set.references);
    row["bleu"] = {{"bleu", bleu.score}, {"chrf", eval::corpus_chrf(replies, set.references)},
                   {"sentences", replies.size()}};
    spdlog::info("evaluate: {}: BLEU {:.2f}, chrF2 {:.2f}", row["label"].get<std::string>(), bleu.score,
                 row["bleu"]["chrf"].get<double>());
  }
}

}  // namespace

json evaluate_pipeline_models(const PipelineConfig& c, const json& state) {
  if (c.threads > 0) set_thread_count(c.threads);
  const json& stages = state["stages"];
  const std::vector<ModelToCompare> models = pipeline_models(stages);
  const auto tokenizer = Tokenizer::load(models.front().path);
  const std::vector<int32_t> tokens = tokenizer->encode(read_text_file(c.eval_text), /*add_special=*/false);

  PrecisionOptions options;
  options.work_dir = (fs::path(c.dir) / "evaluation-scratch").string();
  options.perplexity.context = c.context;
  options.perplexity.max_chunks = c.chunks;
  if (!tokenizer->encode("", true).empty()) options.perplexity.bos_id = tokenizer->bos_id();
  options.prompt_tokens = c.prompt_tokens;
  options.decode_tokens = c.decode_tokens;
  CpuBackend backend;
  const std::vector<ModelToCompare> others(models.begin() + 1, models.end());
  const PrecisionReport report = compare_models(models.front(), others, options, tokens, backend,
                                                [](const std::string& stage) { spdlog::debug("evaluate: {}", stage); });
  fs::remove_all(options.work_dir);

  json rows = json::array();
  for (const PrecisionRow& row : report.rows) {
    auto model = load_model(row.path, backend);  // for its parameter count (weights are mmap'd, not read)
    rows.push_back({{"label", row.label}, {"path", row.path}, {"parameters", model->config.parameter_count()},
                    {"file_bytes", row.file_bytes}, {"perplexity", row.perplexity},
                    {"perplexity_standard_error", row.perplexity_error}, {"kl_to_teacher", row.mean_kl},
                    {"top1_agreement_with_teacher", row.top1_agreement},
                    {"prefill_tokens_per_second", row.speed.prefill_tokens_per_second},
                    {"decode_tokens_per_second", row.speed.decode_tokens_per_second}});
    spdlog::info("evaluate: {}: perplexity {:.2f}, KL to teacher {:.4f}, decode {:.1f} tok/s", row.label,
                 row.perplexity, row.mean_kl, row.speed.decode_tokens_per_second);
  }
  add_draft_measurements(rows, tokens, c, *tokenizer, backend);
  if (c.bleu) add_bleu(rows, *c.bleu, *tokenizer, backend);
  if (c.classify) {
    const std::vector<LabelledText> examples = classify_rows(*c.classify);
    const std::vector<std::string> labels = classify_labels(*c.classify);
    for (json& row : rows) {
      row["classify"] = classify_model(row["path"], *tokenizer, labels, examples, backend);
      spdlog::info("evaluate: {}: accuracy {:.2f}%", row["label"].get<std::string>(),
                   100.0 * row["classify"]["accuracy"].get<double>());
    }
  }
  return {{"rows", rows}, {"context", report.context}, {"windows", report.windows},
          {"scored_positions", report.scored_positions}, {"backend", report.backend},
          {"prompt_tokens", c.prompt_tokens}, {"decode_tokens", c.decode_tokens}, {"text", c.eval_text}};
}

}  // namespace retort
