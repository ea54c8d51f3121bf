// `retort tokenize TOKENIZER`: text on stdin -> ids on stdout (one line, space-separated), or with
// --decode ids on stdin -> text on stdout (no newline added).
#include <charconv>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace retort::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer_path;
  bool add_special = false;
  bool decode = false;
  bool skip_special = false;
};

std::string read_stdin() {
  std::string input{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  require(!std::cin.bad(), ErrorKind::Io, "error while reading standard input");
  return input;
}

std::vector<int32_t> parse_ids(const std::string& input) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  const auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; };
  while (pos < input.size()) {
    if (is_space(input[pos])) {
      ++pos;
      continue;
    }
    size_t end = pos;
    while (end < input.size() && !is_space(input[end])) ++end;
    int32_t id = 0;
    auto [last, error] = std::from_chars(input.data() + pos, input.data() + end, id);
    const std::string word = input.substr(pos, std::min<size_t>(end - pos, 40));
    require(error != std::errc::result_out_of_range, ErrorKind::OutOfRange,
            "token id {} is out of range; --decode reads ids of this tokenizer", word);
    require(error == std::errc() && last == input.data() + end, ErrorKind::InvalidInput,
            "--decode reads token ids separated by whitespace; found \"{}\"", word);
    ids.push_back(id);
    pos = end;
  }
  return ids;
}

void write_stdout(const std::string& bytes) {
  require(std::fwrite(bytes.data(), 1, bytes.size(), stdout) == bytes.size() && std::fflush(stdout) == 0,
          ErrorKind::Io, "cannot write to standard output");
}

void run_tokenize(const TokenizeOptions& options) {
  auto tokenizer = Tokenizer::load(options.tokenizer_path);
  const std::string input = read_stdin();
  if (options.decode) {
    write_stdout(tokenizer->decode(parse_ids(input), options.skip_special));
    return;
  }
  std::string line;
  for (int32_t id : tokenizer->encode(input, options.add_special)) {
    if (!line.empty()) line += ' ';
    line += std::to_string(id);
  }
  line += '\n';
  write_stdout(line);
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  auto* command = app.add_subcommand(
      "tokenize", "Encode UTF-8 text from stdin to token ids (one line), or decode ids back to text (--decode)");
  command->add_option("tokenizer", options->tokenizer_path, "tokenizer.json, or a model directory holding one")
      ->required();
  command->add_flag("--add-special", options->add_special,
                    "Add what the model puts around a sequence (e.g. BOS), as tokenizer_config.json says");
  command->add_flag("--decode", options->decode, "Read whitespace-separated ids from stdin and print their text");
  command->add_flag("--skip-special", options->skip_special, "With --decode: leave out special tokens");
  command->callback([options] { run_tokenize(*options); });
}

}  // namespace retort::cli
