// `retort convert HF_DIR -o model.gguf --type T` and `retort quantize IN.gguf OUT.gguf --type T`.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/flag_checks.h"
#include "quant/convert.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"
#include "util/output_path.h"
#include "util/thread_pool.h"
#include "util/timer.h"

namespace retort::cli {

namespace {

struct ConvertOptions {
  std::string input;
  std::string output;
  std::string type = "bf16";
  int threads = 0;
};

// A bar by tensors with the MiB written and the rate, redrawn in place on a terminal; elsewhere
// (a log, CI) a line at every tenth of the tensors instead of one per tensor.
ConvertProgress progress_printer() {
  struct State {
    Timer timer;
    double bytes = 0;
    size_t next_line = 0;  // tensors done at which the next plain line is printed
  };
  const bool terminal = stderr_is_terminal();
  auto state = std::make_shared<State>();
  return ConvertProgress{[terminal, state](const std::string& tensor, size_t index, size_t count, size_t bytes) {
    state->bytes += static_cast<double>(bytes);
    const size_t done = index + 1;
    const double mib = state->bytes / 1048576.0;
    const double rate = state->bytes / 1e6 / std::max(state->timer.seconds(), 1e-6);
    if (terminal) {
      constexpr size_t kWidth = 30;
      const size_t filled = done * kWidth / count;
      std::fprintf(stderr, "\r\x1b[K[%s%s] %zu/%zu tensors, %.0f MiB, %.0f MB/s  %s", std::string(filled, '=').c_str(),
                   std::string(kWidth - filled, ' ').c_str(), done, count, mib, rate, tensor.c_str());
      if (done == count) std::fputc('\n', stderr);
    } else if (done >= state->next_line || done == count) {
      std::fprintf(stderr, "%zu/%zu tensors, %.0f MiB written, %.0f MB/s\n", done, count, mib, rate);
      state->next_line = done + std::max<size_t>(1, count / 10);
    }
  }};
}

void report(const ConvertOptions& options, const Timer& timer) {
  const auto bytes = std::filesystem::file_size(options.output);
  spdlog::info("wrote {} ({}, {:.1f} MiB) in {:.1f}s", options.output, options.type, bytes / 1048576.0, timer.seconds());
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto options = std::make_shared<ConvertOptions>();
  auto* convert = app.add_subcommand("convert", "Convert a Hugging Face checkpoint to one GGUF file");
  convert->add_option("HF_DIR", options->input, "Checkpoint directory (config.json, *.safetensors, tokenizer.json)")->required();
  convert->add_option("-o,--out", options->output, "Output .gguf file")->required();
  convert->add_option("--type", options->type, "f32, f16, bf16, q8_0, q4_0 or q4_k (Q4_K_M recipe)")->capture_default_str();
  convert->add_option("-t,--threads", options->threads, "Threads for quantizing (default: all)")
      ->check(integer_at_least(0, "0 = all hardware threads"));
  convert->callback([options] {
    set_thread_count(options->threads);
    set_default_map_mode(MapMode::Map);  // each tensor is read once
    const QuantRecipe recipe = parse_quant_recipe(options->type);
    check_output_file(options->output, {options->input}, "-o/--out");
    Timer timer;
    convert_hf_to_gguf(options->input, options->output, recipe, progress_printer());
    report(*options, timer);
  });

  auto* quantize = app.add_subcommand("quantize", "Re-encode a GGUF file's weights in another type");
  quantize->add_option("IN", options->input, "Input .gguf")->required();
  quantize->add_option("OUT", options->output, "Output .gguf")->required();
  quantize->add_option("--type", options->type, "f32, f16, bf16, q8_0, q4_0 or q4_k (Q4_K_M recipe)")->required();
  quantize->add_option("-t,--threads", options->threads, "Threads (default: all)")
      ->check(integer_at_least(0, "0 = all hardware threads"));
  quantize->callback([options] {
    set_thread_count(options->threads);
    set_default_map_mode(MapMode::Map);
    const QuantRecipe recipe = parse_quant_recipe(options->type);
    check_output_file(options->output, {options->input}, "OUT");
    Timer timer;
    quantize_gguf(options->input, options->output, recipe, progress_printer());
    report(*options, timer);
  });
}

}  // namespace retort::cli
