#include "train/data.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/log.h"

namespace retort::train {

DataFormat parse_data_format(const std::string& name) {
  if (name == "tokens") return DataFormat::Tokens;
  if (name == "text") return DataFormat::Text;
  if (name == "jsonl") return DataFormat::Jsonl;
  if (name == "csv") return DataFormat::Csv;
  fail(ErrorKind::InvalidInput, "unknown data format '{}': expected tokens, text, jsonl or csv", name);
}

std::string_view data_format_name(DataFormat format) {
  switch (format) {
    case DataFormat::Tokens: return "tokens";
    case DataFormat::Text: return "text";
    case DataFormat::Jsonl: return "jsonl";
    case DataFormat::Csv: return "csv";
  }
  return "?";
}

namespace {

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  require(in.good(), ErrorKind::NotFound, "cannot open data file '{}'", path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

uint64_t fnv1a(std::string_view bytes, uint64_t hash = 1469598103934665603ull) {
  for (unsigned char c : bytes) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

const Tokenizer& need_tokenizer(const Tokenizer* tokenizer, DataFormat format) {
  require(tokenizer != nullptr, ErrorKind::InvalidInput,
          "data format '{}' needs a tokenizer: give a model directory with tokenizer.json or data.tokenizer",
          data_format_name(format));
  return *tokenizer;
}

// A prompt whose tokens do not count and a response whose tokens do, closed by the EOS token.
Example prompt_response(const Tokenizer& tokenizer, const std::string& prompt, const std::string& response) {
  Example e;
  e.tokens = tokenizer.encode(prompt, true);
  if (!tokenizer.suffix_ids().empty()) e.tokens.resize(e.tokens.size() - tokenizer.suffix_ids().size());
  e.loss_mask.assign(e.tokens.size(), 0);
  std::vector<int32_t> reply = tokenizer.encode(response, false);
  if (!tokenizer.eos_ids().empty()) reply.push_back(tokenizer.eos_ids().front());
  e.tokens.insert(e.tokens.end(), reply.begin(), reply.end());
  e.loss_mask.resize(e.tokens.size(), 1);
  return e;
}

std::vector<Example> parse_tokens(const std::string& text, const std::string& path) {
  std::vector<Example> examples;
  std::istringstream lines(text);
  std::string line;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    Example e;
    std::istringstream words(line);
    std::string word;
    while (words >> word) {
      int32_t id = 0;
      auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), id);
      require(ec == std::errc() && end == word.data() + word.size() && id >= 0, ErrorKind::InvalidInput,
              "{}:{}: '{}' is not a token id (expected whitespace-separated non-negative integers, one "
              "sequence per line)", path, number, word);
      e.tokens.push_back(id);
    }
    if (e.tokens.empty()) continue;
    e.loss_mask.assign(e.tokens.size(), 1);
    examples.push_back(std::move(e));
  }
  return examples;
}

std::vector<Example> pack_text(const std::string& text, int64_t seq_len, const Tokenizer& tokenizer) {
  std::vector<int32_t> ids = tokenizer.encode(text, true);
  std::vector<Example> examples;
  // Windows of seq_len + 1 tokens overlapping by one, so every token after the first is predicted once.
  for (size_t begin = 0; begin + 1 < ids.size(); begin += static_cast<size_t>(seq_len)) {
    const size_t end = std::min(ids.size(), begin + static_cast<size_t>(seq_len) + 1);
    Example e;
    e.tokens.assign(ids.begin() + static_cast<ptrdiff_t>(begin), ids.begin() + static_cast<ptrdiff_t>(end));
    e.loss_mask.assign(e.tokens.size(), 1);
    examples.push_back(std::move(e));
  }
  return examples;
}

size_t common_prefix(const std::string& a, const std::string& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

// The conversation rendered once through the template; every assistant turn's span in it (from
// where the template would start generating after the turns before it, through its end-of-turn
// markup) is trained, everything else (system, user, template text) is context only. Spans are
// found by rendering prefixes of the conversation, so templates that rewrite earlier turns (R1
// drops the reasoning of past replies) are followed exactly.
Example chat_example(const Tokenizer& tokenizer, ChatTemplateKind kind, const nlohmann::json& messages,
                     const std::string& where) {
  std::vector<ChatMessage> chat;
  for (const auto& m : messages) {
    require(m.is_object() && m.contains("role") && m.contains("content") && m["role"].is_string() &&
                m["content"].is_string(),
            ErrorKind::InvalidInput, "{}: each message needs string fields \"role\" and \"content\"", where);
    chat.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  require(!chat.empty() && chat.back().role == "assistant", ErrorKind::InvalidInput,
          "{}: the conversation must end with an assistant message (the loss is on the assistant turns)", where);
  const std::string full = render_chat(kind, chat, false);
  Example e;
  size_t done = 0;  // characters of `full` already tokenized
  auto append = [&](size_t end, uint8_t trained) {
    const std::vector<int32_t> ids = tokenizer.encode(full.substr(done, end - done), false);
    e.tokens.insert(e.tokens.end(), ids.begin(), ids.end());
    e.loss_mask.resize(e.tokens.size(), trained);
    done = end;
  };
  for (size_t i = 0; i < chat.size(); ++i) {
    if (chat[i].role != "assistant") continue;
    const std::vector<ChatMessage> before(chat.begin(), chat.begin() + static_cast<ptrdiff_t>(i));
    const std::vector<ChatMessage> through(chat.begin(), chat.begin() + static_cast<ptrdiff_t>(i + 1));
    const size_t begin = std::max(done, common_prefix(render_chat(kind, before, true), full));
    const size_t end = i + 1 == chat.size() ? full.size() : common_prefix(render_chat(kind, through, false), full);
    require(end > begin, ErrorKind::InvalidInput,
            "{}: could not find assistant message {} in the rendered conversation (the chat template rewrites it)",
            where, i + 1);
    append(begin, 0);
    append(end, 1);
  }
  return e;
}

std::vector<Example> parse_jsonl(const std::string& text, const std::string& path, const Tokenizer& tokenizer,
                                 const DataOptions& options) {
  std::vector<Example> examples;
  std::istringstream lines(text);
  std::string line;
  std::optional<ChatTemplateKind> kind;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, number);
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      fail(ErrorKind::InvalidInput, "{}: not valid JSON ({})", where, e.what());
    }
    if (row.is_object() && row.contains("messages") && row["messages"].is_array()) {
      if (!kind) {
        kind = options.chat_template.empty() ? detect_chat_template(tokenizer.chat_template_source())
                                             : chat_template_from_name(options.chat_template);
        require(kind.has_value(), ErrorKind::InvalidInput, "unknown chat template '{}': expected one of {}",
                options.chat_template, chat_template_names());
      }
      examples.push_back(chat_example(tokenizer, *kind, row["messages"], where));
      continue;
    }
    require(row.is_object() && row.contains("prompt") && row.contains("response") && row["prompt"].is_string() &&
                row["response"].is_string(),
            ErrorKind::InvalidInput,
            "{}: expected an object with string fields \"prompt\" and \"response\", or a \"messages\" array", where);
    examples.push_back(prompt_response(tokenizer, row["prompt"].get<std::string>(), row["response"].get<std::string>()));
  }
  return examples;
}

// RFC 4180 fields (quotes, doubled quotes, newlines inside quotes); records carry their first line.
struct CsvRecord {
  int64_t line = 0;
  std::vector<std::string> fields;
};

std::vector<CsvRecord> parse_csv_records(const std::string& text, const std::string& path) {
  std::vector<CsvRecord> records;
  CsvRecord record{1, {""}};
  int64_t line = 1;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') { record.fields.back() += '"'; ++i; }
      else if (c == '"') quoted = false;
      else { if (c == '\n') ++line; record.fields.back() += c; }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      record.fields.emplace_back();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (!(record.fields.size() == 1 && record.fields[0].empty())) records.push_back(std::move(record));
      record = CsvRecord{++line, {""}};
    } else {
      record.fields.back() += c;
    }
  }
  require(!quoted, ErrorKind::InvalidInput, "{}:{}: a quoted field is never closed", path, record.line);
  if (!(record.fields.size() == 1 && record.fields[0].empty())) records.push_back(std::move(record));
  return records;
}

std::vector<Example> parse_csv(const std::string& text, const std::string& path, const Tokenizer& tokenizer) {
  std::vector<CsvRecord> records = parse_csv_records(text, path);
  require(!records.empty(), ErrorKind::InvalidInput, "{}: empty CSV; expected a header line 'text,label'", path);
  const auto& header = records.front().fields;
  auto column = [&](const char* name) {
    auto it = std::find(header.begin(), header.end(), name);
    require(it != header.end(), ErrorKind::InvalidInput, "{}:1: the header has no '{}' column (expected 'text,label')",
            path, name);
    return static_cast<size_t>(it - header.begin());
  };
  const size_t text_col = column("text"), label_col = column("label");
  std::vector<Example> examples;
  for (size_t r = 1; r < records.size(); ++r) {
    const auto& rec = records[r];
    require(rec.fields.size() == header.size(), ErrorKind::InvalidInput, "{}:{}: {} fields, the header has {}", path,
            rec.line, rec.fields.size(), header.size());
    examples.push_back(prompt_response(tokenizer, rec.fields[text_col] + "\nLabel:", " " + rec.fields[label_col]));
  }
  return examples;
}

void write_cache(const std::string& path, const std::vector<Example>& examples) {
  std::string bytes = "RTDC1\n";
  auto put = [&](const void* p, size_t n) { bytes.append(static_cast<const char*>(p), n); };
  const uint64_t count = examples.size();
  put(&count, sizeof count);
  for (const Example& e : examples) {
    const uint64_t n = e.tokens.size();
    put(&n, sizeof n);
    put(e.tokens.data(), n * sizeof(int32_t));
    put(e.loss_mask.data(), n);
  }
  write_file_atomically(path, bytes);
}

std::optional<std::vector<Example>> read_cache(const std::string& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  const std::string bytes = read_whole_file(path);
  size_t at = 6;
  auto get = [&](void* p, size_t n) {
    require(at + n <= bytes.size(), ErrorKind::InvalidInput, "token cache '{}' is truncated; delete it", path);
    std::memcpy(p, bytes.data() + at, n);
    at += n;
  };
  require(bytes.rfind("RTDC1\n", 0) == 0, ErrorKind::InvalidInput, "'{}' is not a retort token cache; delete it", path);
  uint64_t count = 0;
  get(&count, sizeof count);
  std::vector<Example> examples(count);
  for (Example& e : examples) {
    uint64_t n = 0;
    get(&n, sizeof n);
    e.tokens.resize(n);
    e.loss_mask.resize(n);
    get(e.tokens.data(), n * sizeof(int32_t));
    get(e.loss_mask.data(), n);
  }
  return examples;
}

}  // namespace

std::vector<Example> load_examples(const std::string& path, const DataOptions& options, const Tokenizer* tokenizer,
                                   int64_t vocab_size) {
  const std::string text = read_whole_file(path);
  std::string cache_path;
  if (!options.cache_dir.empty() && options.format != DataFormat::Tokens) {
    // v2: chat examples train on every assistant turn (v1 only on the last).
    const std::string key = fmt::format("v2|{}|{}|{}|{}", data_format_name(options.format), options.seq_len,
                                        options.chat_template, options.tokenizer_fingerprint);
    cache_path = fmt::format("{}/{:016x}.tokens", options.cache_dir, fnv1a(text, fnv1a(key)));
    if (auto cached = read_cache(cache_path)) {
      spdlog::info("{}: {} examples from the token cache {}", path, cached->size(), cache_path);
      return *cached;
    }
  }
  std::vector<Example> examples;
  switch (options.format) {
    case DataFormat::Tokens: examples = parse_tokens(text, path); break;
    case DataFormat::Text: examples = pack_text(text, options.seq_len, need_tokenizer(tokenizer, options.format)); break;
    case DataFormat::Jsonl: examples = parse_jsonl(text, path, need_tokenizer(tokenizer, options.format), options); break;
    case DataFormat::Csv: examples = parse_csv(text, path, need_tokenizer(tokenizer, options.format)); break;
  }
  int64_t truncated = 0;
  std::erase_if(examples, [](const Example& e) { return e.tokens.size() < 2; });
  for (Example& e : examples) {
    for (int32_t id : e.tokens)
      require(id < vocab_size, ErrorKind::OutOfRange, "{}: token id {} is outside the model's vocabulary 0..{}", path,
              id, vocab_size - 1);
    if (static_cast<int64_t>(e.tokens.size()) > options.seq_len + 1) {
      e.tokens.resize(static_cast<size_t>(options.seq_len + 1));
      e.loss_mask.resize(e.tokens.size());
      ++truncated;
    }
  }
  require(!examples.empty(), ErrorKind::InvalidInput, "{}: no training examples (each needs at least two tokens)", path);
  if (truncated > 0) spdlog::warn("{}: {} examples longer than seq_len + 1 = {} tokens were truncated", path, truncated, options.seq_len + 1);
  if (!cache_path.empty()) {
    std::filesystem::create_directories(options.cache_dir);
    write_cache(cache_path, examples);
  }
  return examples;
}

std::vector<int64_t> seeded_permutation(int64_t count, uint64_t seed) {
  std::vector<int64_t> order(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) order[i] = i;
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 0xD1B54A32D192ED03ull;
  auto next = [&] {  // splitmix64
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  for (int64_t i = count - 1; i > 0; --i) std::swap(order[i], order[next() % uint64_t(i + 1)]);
  return order;
}

void split_examples(std::vector<Example> all, const DataOptions& options, std::vector<Example>& train,
                    std::vector<Example>& validation) {
  require(options.val_fraction >= 0 && options.val_fraction < 1, ErrorKind::InvalidInput,
          "val_fraction must be in [0, 1), got {}", options.val_fraction);
  const auto count = static_cast<int64_t>(all.size());
  auto held_out = static_cast<int64_t>(double(count) * options.val_fraction);
  if (options.val_fraction > 0 && held_out == 0 && count > 1) held_out = 1;
  const std::vector<int64_t> order = seeded_permutation(count, options.seed ^ 0x5EEDull);
  train.clear();
  validation.clear();
  for (int64_t i = 0; i < count; ++i) (i < held_out ? validation : train).push_back(std::move(all[order[i]]));
}

BatchLoader::BatchLoader(const std::vector<Example>& examples, int64_t batch, int64_t seq_len, uint64_t seed,
                         bool shuffle)
    : examples_(examples), batch_(batch), seq_len_(seq_len), seed_(seed), shuffle_(shuffle) {
  require(!examples.empty(), ErrorKind::InvalidInput, "no examples to batch");
}

void BatchLoader::make_order() {
  if (order_epoch_ == position_.epoch) return;
  const auto n = static_cast<int64_t>(examples_.size());
  if (shuffle_) {
    order_ = seeded_permutation(n, seed_ + 0x1000003ull * uint64_t(position_.epoch));
  } else {
    order_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order_[i] = i;
  }
  order_epoch_ = position_.epoch;
}

void BatchLoader::seek(DataPosition position) {
  require(position.index >= 0 && position.index < examples() && position.epoch >= 0, ErrorKind::InvalidInput,
          "data position (epoch {}, index {}) is outside this data set of {} examples; was the data changed?",
          position.epoch, position.index, examples());
  position_ = position;
}

void BatchLoader::next(std::vector<int32_t>& inputs, std::vector<int32_t>& targets) {
  inputs.assign(static_cast<size_t>(batch_ * seq_len_), 0);
  targets.assign(static_cast<size_t>(batch_ * seq_len_), -1);
  for (int64_t b = 0; b < batch_; ++b) {
    make_order();
    const Example& e = examples_[order_[position_.index]];
    if (++position_.index == examples()) position_ = {position_.epoch + 1, 0};
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(e.tokens.size()) - 1, seq_len_);
    for (int64_t t = 0; t < n; ++t) {
      inputs[b * seq_len_ + t] = e.tokens[t];
      if (e.loss_mask[t + 1]) targets[b * seq_len_ + t] = e.tokens[t + 1];
    }
  }
}

}  // namespace retort::train
