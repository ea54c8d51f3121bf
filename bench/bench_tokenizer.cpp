// Tokenizer encode throughput: WikiText-2 (raw test split) with the Qwen2 vocabulary, one thread.
// Reports bytes_per_second (the target is >= 10 MB/s on the project's 2-core machine).
//   build/release/bench/bench_tokenizer --benchmark_filter=Encode
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"
#include "util/mapped_file.h"

namespace {

std::string source_path(const std::string& relative) {
  return (std::filesystem::path(RETORT_SOURCE_DIR) / relative).lexically_normal().string();
}

std::string shared_path(const std::string& relative) {
  if (const char* shared = std::getenv("RETORT_SHARED_DIR")) return (std::filesystem::path(shared) / relative).string();
  return source_path("../shared/" + relative);
}

// Loaded once: reading the 11 MB tokenizer.json takes about a second.
const retort::Tokenizer* qwen_tokenizer() {
  static std::unique_ptr<retort::Tokenizer> tokenizer = [] {
    const std::string path = source_path(".cache/tokenizers/qwen/tokenizer.json");
    return std::filesystem::exists(path) ? retort::Tokenizer::load(path) : nullptr;
  }();
  return tokenizer.get();
}

const std::string& wikitext() {
  static const std::string text = [] {
    const std::string path = shared_path("data/wikitext-2-raw/wiki.test.raw");
    return std::filesystem::exists(path) ? retort::read_text_file(path) : std::string();
  }();
  return text;
}

bool inputs_present(benchmark::State& state) {
  if (qwen_tokenizer() != nullptr && !wikitext().empty()) return true;
  state.SkipWithError("needs .cache/tokenizers/qwen (scripts/fetch-tokenizers.sh) and ../shared/data/wikitext-2-raw");
  return false;
}

// The whole file in one call; the per-word cache warms up during the first iteration, as it does
// in a long-running server.
void BM_EncodeWikiText(benchmark::State& state) {
  if (!inputs_present(state)) return;
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = qwen_tokenizer()->encode(wikitext());
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * wikitext().size()));
  state.counters["tokens"] = static_cast<double>(tokens);
}
BENCHMARK(BM_EncodeWikiText)->Unit(benchmark::kMillisecond)->MinTime(2.0);

// Line by line, as prompts arrive: many short calls.
void BM_EncodeWikiTextLines(benchmark::State& state) {
  if (!inputs_present(state)) return;
  const std::string& text = wikitext();
  for (auto _ : state) {
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      end = end == std::string::npos ? text.size() : end + 1;
      auto ids = qwen_tokenizer()->encode(std::string_view(text).substr(start, end - start));
      benchmark::DoNotOptimize(ids.data());
      start = end;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_EncodeWikiTextLines)->Unit(benchmark::kMillisecond)->MinTime(2.0);

void BM_DecodeWikiText(benchmark::State& state) {
  if (!inputs_present(state)) return;
  const auto ids = qwen_tokenizer()->encode(wikitext());
  for (auto _ : state) {
    std::string text = qwen_tokenizer()->decode(ids);
    benchmark::DoNotOptimize(text.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * wikitext().size()));
}
BENCHMARK(BM_DecodeWikiText)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
