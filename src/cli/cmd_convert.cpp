// `retort convert HF_DIR -o model.gguf --type T` and `retort quantize IN.gguf OUT.gguf --type T`.
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "quant/convert.h"
#include "util/error.h"
#include "util/log.h"
#include "util/mapped_file.h"
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

// One line per tensor, rewritten in place on a terminal.
ConvertProgress progress_printer() {
  const bool terminal = stderr_is_terminal();
  return ConvertProgress{[terminal](const std::string& tensor, size_t index, size_t count) {
    std::fprintf(stderr, terminal ? "\r\x1b[K[%zu/%zu] %s" : "[%zu/%zu] %s\n", index + 1, count, tensor.c_str());
    if (terminal && index + 1 == count) std::fputc('\n', stderr);
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
  convert->add_option("-t,--threads", options->threads, "Threads for quantizing (default: all)");
  convert->callback([options] {
    set_thread_count(options->threads);
    set_default_map_mode(MapMode::Map);  // each tensor is read once
    const QuantRecipe recipe = parse_quant_recipe(options->type);
    Timer timer;
    convert_hf_to_gguf(options->input, options->output, recipe, progress_printer());
    report(*options, timer);
  });

  auto* quantize = app.add_subcommand("quantize", "Re-encode a GGUF file's weights in another type");
  quantize->add_option("IN", options->input, "Input .gguf")->required();
  quantize->add_option("OUT", options->output, "Output .gguf")->required();
  quantize->add_option("--type", options->type, "f32, f16, bf16, q8_0, q4_0 or q4_k (Q4_K_M recipe)")->required();
  quantize->add_option("-t,--threads", options->threads, "Threads (default: all)");
  quantize->callback([options] {
    set_thread_count(options->threads);
    set_default_map_mode(MapMode::Map);
    const QuantRecipe recipe = parse_quant_recipe(options->type);
    require(std::filesystem::absolute(options->input) != std::filesystem::absolute(options->output),
            ErrorKind::InvalidInput, "IN and OUT are the same file; write to a new file");
    Timer timer;
    quantize_gguf(options->input, options->output, recipe, progress_printer());
    report(*options, timer);
  });
}

}  // namespace retort::cli
