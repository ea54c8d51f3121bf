#pragma once
// The precision report: for one reference model and a list of weight types, what each type costs
// in accuracy on the same text (perplexity, mean KL divergence from the reference's next-token
// distribution, top-1 agreement) and what it buys (file size, prefill and decode tokens/s).
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "eval/perplexity.h"
#include "eval/throughput.h"
#include "kernels/backend.h"
#include "quant/convert.h"

namespace retort {

struct PrecisionOptions {
  std::string reference_path;         // HF checkpoint directory or GGUF file, unquantized
  std::vector<QuantRecipe> recipes;   // the types to compare against it
  std::string work_dir;               // the quantized GGUF files are written here
  PerplexityOptions perplexity;       // windows of text shared by every model
  int64_t prompt_tokens = 128;        // speed: one prefill of this many tokens ...
  int64_t decode_tokens = 32;         // ... then this many greedy decode steps
};

struct PrecisionRow {
  std::string label;       // "reference" or the recipe's name
  std::string path;
  uint64_t file_bytes = 0;
  double perplexity = 0;
  double perplexity_error = 0;
  double mean_kl = 0;         // nats per scored position, KL(reference ‖ this)
  double top1_agreement = 1;  // share of positions whose most likely token is the reference's
  SpeedResult speed;
};

struct PrecisionReport {
  std::vector<PrecisionRow> rows;  // the reference first
  int64_t context = 0;
  int64_t windows = 0;
  int64_t scored_positions = 0;
  std::string backend;
};

// Stage names ("converting q8_0", "evaluating q8_0 window 3/8", ...) for a progress display.
using PrecisionProgress = std::function<void(const std::string& stage)>;

struct ModelToCompare {
  std::string label;
  std::string path;  // HF checkpoint directory or GGUF file
};

// Evaluates the reference, then each other model against it (same vocabulary), one model in memory
// at a time: perplexity on text_tokens, KL(reference ‖ model), top-1 agreement, prefill/decode
// speed. options.recipes and reference_path are not used; work_dir holds the scratch file.
PrecisionReport compare_models(const ModelToCompare& reference, const std::vector<ModelToCompare>& others,
                               const PrecisionOptions& options, std::span<const int32_t> text_tokens, Backend& backend,
                               const PrecisionProgress& progress = {});

// Quantizes the reference into each type (written atomically into work_dir), then evaluates the
// models one at a time, so only one is in memory; the reference's log-probabilities wait in a
// scratch file in work_dir, removed at the end.
PrecisionReport measure_precision(const PrecisionOptions& options, std::span<const int32_t> text_tokens,
                                  Backend& backend, const PrecisionProgress& progress = {});

std::string precision_markdown(const PrecisionReport& report);
std::string precision_json(const PrecisionReport& report);

}  // namespace retort
