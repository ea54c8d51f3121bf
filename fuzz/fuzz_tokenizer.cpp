// libFuzzer target: arbitrary bytes through encode and decode of a real tokenizer. Nothing may
// crash or throw; decode(encode(x)) must give back x after normalization (invalid UTF-8 bytes
// are encoded byte-wise, so they come back unchanged too); the streaming decoder must emit only
// valid UTF-8 and, for valid input, the same text.
// The tokenizer is RETORT_FUZZ_TOKENIZER, else the Qwen one fetched by scripts/fetch-tokenizers.sh.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

const retort::Tokenizer& fuzz_tokenizer() {
  static const std::unique_ptr<retort::Tokenizer> tokenizer = [] {
    const char* from_env = std::getenv("RETORT_FUZZ_TOKENIZER");
    const std::string path =
        from_env != nullptr ? from_env : std::string(RETORT_SOURCE_DIR) + "/.cache/tokenizers/qwen/tokenizer.json";
    try {
      return retort::Tokenizer::load(path);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path.c_str(), error.what());
      std::abort();
    }
  }();
  return *tokenizer;
}

void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_tokenizer: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const retort::Tokenizer& tokenizer = fuzz_tokenizer();
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const auto ids = tokenizer.encode(input, size % 2 == 1);
  for (int32_t id : ids) check(tokenizer.is_token(id), "encode produced an id that is not a token");

  const auto plain_ids = tokenizer.encode(input);
  check(tokenizer.decode(plain_ids) == tokenizer.normalize(input), "decode(encode(x)) != normalize(x)");

  retort::StreamingDecoder stream(tokenizer);
  std::string streamed;
  for (int32_t id : plain_ids) streamed += stream.push(id);
  streamed += stream.flush();
  check(retort::utf8::is_valid(streamed), "the streaming decoder emitted invalid UTF-8");
  if (retort::utf8::is_valid(input)) check(streamed == tokenizer.normalize(input), "streamed text != normalize(x)");
  return 0;
}
