#pragma once
// Training data: files in one of five formats become token sequences with a loss mask, are split
// into train and validation sets and batched into fixed [B, T] inputs and targets. Tokenization
// happens once; the result is cached beside the run, keyed by a hash of the file, the tokenizer
// and the settings.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace retort {
class Tokenizer;
}

namespace retort::train {

enum class DataFormat {
  Tokens,  // whitespace-separated token ids, one sequence per line
  Text,    // plain text, tokenized and packed into sequences of seq_len + 1 tokens
  Jsonl,   // {"prompt", "response"} (loss on the response) or {"messages": [...]} (loss on every assistant turn)
  Csv,     // header "text,label": prompt "<text>\nLabel:" and response " <label>"
};
DataFormat parse_data_format(const std::string& name);  // tokens, text, jsonl, csv
std::string_view data_format_name(DataFormat format);

struct Example {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> loss_mask;  // per token: 1 when predicting this token counts in the loss
};

struct DataOptions {
  DataFormat format = DataFormat::Tokens;
  int64_t seq_len = 256;
  double val_fraction = 0.0;       // share of examples held out for validation
  uint64_t seed = 0;               // split and shuffling
  std::string chat_template;       // for messages: a template name, or "" to detect from the tokenizer
  std::string cache_dir;           // "" disables the tokenization cache
  std::string tokenizer_fingerprint;  // part of the cache key (e.g. a hash of tokenizer.json)
};

// Reads and tokenizes (or loads from the cache) one file. Parse errors name the file and line.
// `tokenizer` may be null for DataFormat::Tokens. Ids are checked against vocab_size.
std::vector<Example> load_examples(const std::string& path, const DataOptions& options, const Tokenizer* tokenizer,
                                   int64_t vocab_size);

// Deterministic split: the examples are permuted with the seed, the first val share held out.
void split_examples(std::vector<Example> all, const DataOptions& options, std::vector<Example>& train,
                    std::vector<Example>& validation);

// Where a loader is in its stream: which epoch and how far into that epoch's order.
struct DataPosition {
  int64_t epoch = 0;
  int64_t index = 0;
};

// Batches of [B, T] inputs and targets (−1 where the loss ignores a position); each epoch visits
// every example once in an order drawn from (seed, epoch), so a position fully determines what
// comes next.
class BatchLoader {
 public:
  BatchLoader(const std::vector<Example>& examples, int64_t batch, int64_t seq_len, uint64_t seed, bool shuffle);

  void next(std::vector<int32_t>& inputs, std::vector<int32_t>& targets);
  DataPosition position() const { return position_; }
  void seek(DataPosition position);
  int64_t examples() const { return static_cast<int64_t>(examples_.size()); }

 private:
  void make_order();

  const std::vector<Example>& examples_;
  int64_t batch_, seq_len_;
  uint64_t seed_;
  bool shuffle_;
  DataPosition position_;
  std::vector<int64_t> order_;
  int64_t order_epoch_ = -1;
};

// Fisher–Yates with a 64-bit generator of our own, so orders are the same on every platform.
std::vector<int64_t> seeded_permutation(int64_t count, uint64_t seed);

}  // namespace retort::train
