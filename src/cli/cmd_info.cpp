// `retort info MODEL_DIR`: what a checkpoint directory holds and whether it is complete — the
// config, every tensor, and each tensor missing, extra or shaped differently from what the config
// implies. Exits 1 when a tensor the forward pass needs is missing, misshapen or of a dtype it
// cannot compute with; extra tensors are only reported.
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "model/tensor_table.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort::cli {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

struct ShapeMismatch {
  std::string name;
  std::vector<int64_t> found;
  std::vector<int64_t> expected;
};

struct CheckpointCheck {
  std::vector<const TensorView*> tensors;  // expected order first, then the extras
  std::vector<ExpectedTensor> missing;
  std::vector<std::string> extra;
  std::vector<ShapeMismatch> mismatched;
  std::vector<const TensorView*> unusable_dtype;  // not a float type the kernels take
  size_t expected_count = 0;

  bool ok() const { return missing.empty() && mismatched.empty() && unusable_dtype.empty(); }
};

bool is_compute_dtype(DType type) {
  return type == DType::BF16 || type == DType::F16 || type == DType::F32;
}

CheckpointCheck check_against_config(const ModelConfig& config, const Checkpoint& checkpoint) {
  CheckpointCheck check;
  std::set<std::string> expected_names;
  auto expected_list = expected_tensors(config);
  check.expected_count = expected_list.size();
  for (ExpectedTensor& expected : expected_list) {
    expected_names.insert(expected.name);
    const TensorView* view = checkpoint.find(expected.name);
    if (view == nullptr) {
      check.missing.push_back(std::move(expected));
      continue;
    }
    check.tensors.push_back(view);
    if (view->shape != expected.shape) check.mismatched.push_back({view->name, view->shape, expected.shape});
    if (!is_compute_dtype(view->dtype)) check.unusable_dtype.push_back(view);
  }
  for (const std::string& name : checkpoint.names()) {
    if (expected_names.count(name) != 0) continue;
    check.extra.push_back(name);
    check.tensors.push_back(checkpoint.find(name));
  }
  return check;
}

uint64_t size_on_disk(const Checkpoint& checkpoint) {
  uint64_t total = 0;
  for (const std::string& path : checkpoint.file_paths()) total += fs::file_size(path);
  return total;
}

std::string human_count(int64_t count) {
  if (count >= 1'000'000'000) return fmt::format("{:.2f}B", count / 1e9);
  if (count >= 1'000'000) return fmt::format("{:.2f}M", count / 1e6);
  if (count >= 1'000) return fmt::format("{:.1f}K", count / 1e3);
  return fmt::to_string(count);
}

std::string human_bytes(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) return fmt::format("{:.2f} GiB", bytes / double(uint64_t{1} << 30));
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", bytes / double(uint64_t{1} << 20));
  if (bytes >= (uint64_t{1} << 10)) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  return fmt::format("{} B", bytes);
}

std::map<std::string, int> dtype_counts(const Checkpoint& checkpoint) {
  std::map<std::string, int> counts;
  for (const std::string& name : checkpoint.names()) {
    ++counts[std::string(dtype_name(checkpoint.get(name).dtype))];
  }
  return counts;
}

// The parsed config, in retort's terms (what the forward pass will use).
ordered_json config_fields(const ModelConfig& config) {
  ordered_json fields;
  fields["hidden_size"] = config.hidden_size;
  fields["intermediate_size"] = config.intermediate_size;
  fields["num_layers"] = config.num_layers;
  fields["num_heads"] = config.num_heads;
  fields["num_kv_heads"] = config.num_kv_heads;
  fields["head_dim"] = config.head_dim;
  fields["vocab_size"] = config.vocab_size;
  fields["max_positions"] = config.max_positions;
  fields["rms_norm_eps"] = config.rms_norm_eps;
  fields["rope_theta"] = config.rope.theta;
  if (config.rope.scaling == RopeScaling::Llama3) {
    fields["rope_scaling"] = {{"type", "llama3"},
                              {"factor", config.rope.factor},
                              {"low_freq_factor", config.rope.low_freq_factor},
                              {"high_freq_factor", config.rope.high_freq_factor},
                              {"original_max_positions", config.rope.original_max_positions}};
  } else {
    fields["rope_scaling"] = "none";
  }
  fields["tie_word_embeddings"] = config.tie_word_embeddings;
  fields["attention_bias"] = config.attention_bias;
  fields["use_sliding_window"] = config.use_sliding_window;
  fields["sliding_window"] = config.sliding_window;
  fields["max_window_layers"] = config.max_window_layers;
  fields["bos_token_ids"] = config.bos_token_ids;
  fields["eos_token_ids"] = config.eos_token_ids;
  fields["torch_dtype"] = config.torch_dtype;
  return fields;
}

struct InfoInputs {
  std::string directory;
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
  CheckpointCheck check;
  // tokenizer.json, loaded as `run` loads it: its ids, or why it cannot be used (none: no file).
  std::optional<int64_t> tokenizer_tokens;
  std::string tokenizer_problem;
  bool ok() const { return check.ok() && tokenizer_problem.empty(); }
};

// Loads the directory's tokenizer.json, if any, the way run/chat/serve do.
void check_tokenizer(InfoInputs& info) {
  if (!fs::exists(fs::path(info.directory) / "tokenizer.json")) return;
  try {
    info.tokenizer_tokens = Tokenizer::load(info.directory)->vocab_size();
  } catch (const Error& error) {
    info.tokenizer_problem = error.what();
  }
}

ordered_json report_json(const InfoInputs& info) {
  ordered_json out;
  out["directory"] = info.directory;
  out["architecture"] = architecture_name(info.config.arch);
  out["hf_architecture"] = info.config.hf_architecture;
  out["parameter_count"] = info.config.parameter_count();
  out["dtypes"] = dtype_counts(*info.checkpoint);
  out["size_on_disk_bytes"] = size_on_disk(*info.checkpoint);
  out["files"] = info.checkpoint->file_paths();
  out["config"] = config_fields(info.config);
  out["tensors"] = ordered_json::array();
  for (const TensorView* view : info.check.tensors) {
    out["tensors"].push_back({{"name", view->name},
                              {"dtype", dtype_name(view->dtype)},
                              {"shape", view->shape},
                              {"file", fs::path(view->file).filename().string()}});
  }
  out["missing"] = ordered_json::array();
  for (const ExpectedTensor& tensor : info.check.missing) {
    out["missing"].push_back({{"name", tensor.name}, {"expected_shape", tensor.shape}});
  }
  out["extra"] = info.check.extra;
  out["shape_mismatches"] = ordered_json::array();
  for (const ShapeMismatch& mismatch : info.check.mismatched) {
    out["shape_mismatches"].push_back(
        {{"name", mismatch.name}, {"shape", mismatch.found}, {"expected_shape", mismatch.expected}});
  }
  out["unsupported_dtypes"] = ordered_json::array();
  for (const TensorView* view : info.check.unusable_dtype) {
    out["unsupported_dtypes"].push_back({{"name", view->name}, {"dtype", dtype_name(view->dtype)}});
  }
  if (info.tokenizer_tokens) out["tokenizer"] = {{"tokens", *info.tokenizer_tokens}};
  if (!info.tokenizer_problem.empty()) out["tokenizer"] = {{"error", info.tokenizer_problem}};
  out["ok"] = info.ok();
  return out;
}

void print_problems(const CheckpointCheck& check) {
  fmt::print("check\n");
  for (const ExpectedTensor& tensor : check.missing) {
    fmt::print("  missing   {} (expected [{}])\n", tensor.name, fmt::join(tensor.shape, ", "));
  }
  for (const ShapeMismatch& mismatch : check.mismatched) {
    fmt::print("  shape     {} is [{}], config.json implies [{}]\n", mismatch.name,
               fmt::join(mismatch.found, ", "), fmt::join(mismatch.expected, ", "));
  }
  for (const TensorView* view : check.unusable_dtype) {
    fmt::print("  dtype     {} is {}; retort computes with bf16, f16 or f32\n", view->name,
               dtype_name(view->dtype));
  }
  for (const std::string& name : check.extra) {
    fmt::print("  extra     {} (not used by this architecture; ignored)\n", name);
  }
  if (check.ok()) {
    fmt::print("  ok: all {} expected tensors present with the expected shapes\n", check.expected_count);
  }
}

void print_report(const InfoInputs& info) {
  const Checkpoint& checkpoint = *info.checkpoint;
  const auto files = checkpoint.file_paths();
  std::vector<std::string> dtypes;
  for (const auto& [dtype, count] : dtype_counts(checkpoint)) {
    dtypes.push_back(fmt::format("{} ({} tensors)", dtype, count));
  }
  const int64_t parameters = info.config.parameter_count();
  fmt::print("{}\n", info.directory);
  fmt::print("  {:<22}{} ({})\n", "architecture", architecture_name(info.config.arch),
             info.config.hf_architecture);
  fmt::print("  {:<22}{} ({})\n", "parameters", human_count(parameters), parameters);
  fmt::print("  {:<22}{}\n", "dtypes", fmt::join(dtypes, ", "));
  fmt::print("  {:<22}{} in {} file{}\n", "size on disk", human_bytes(size_on_disk(checkpoint)),
             files.size(), files.size() == 1 ? "" : "s");
  fmt::print("  {:<22}{}\n", "tokenizer",
             info.tokenizer_tokens ? fmt::format("{} tokens", *info.tokenizer_tokens)
             : info.tokenizer_problem.empty() ? std::string("none (tokenizer.json absent: run and serve need one)")
                                             : std::string("unusable (below)"));
  fmt::print("config\n");
  const ordered_json fields = config_fields(info.config);
  for (const auto& [key, value] : fields.items()) {
    fmt::print("  {:<22}{}\n", key, value.is_string() ? value.get<std::string>() : value.dump());
  }
  fmt::print("tensors ({})\n", info.check.tensors.size());
  for (const TensorView* view : info.check.tensors) {
    fmt::print("  {:<52} {:<5} [{}]\n", view->name, dtype_name(view->dtype), fmt::join(view->shape, ", "));
  }
  print_problems(info.check);
}

void run_info(const std::string& directory, bool as_json) {
  const fs::path config_path = fs::path(directory) / "config.json";
  require(fs::exists(config_path), ErrorKind::NotFound,
          "no config.json in '{}'; `retort info` needs a Hugging Face checkpoint directory "
          "(config.json plus model.safetensors or its shards)",
          directory);
  InfoInputs info;
  info.directory = directory;
  info.config = load_hf_config(config_path.string());
  info.checkpoint = Checkpoint::open_directory(directory);
  info.check = check_against_config(info.config, *info.checkpoint);
  check_tokenizer(info);

  if (as_json) {
    fmt::print("{}\n", report_json(info).dump(2));
  } else {
    print_report(info);
  }
  if (!info.check.ok()) {
    fmt::print(stderr, "error: '{}' does not match its config.json: {} missing, {} misshapen, {} of an "
               "unusable dtype\n",
               directory, info.check.missing.size(), info.check.mismatched.size(),
               info.check.unusable_dtype.size());
    set_exit_code(1);
  }
  if (!info.tokenizer_problem.empty()) {
    fmt::print(stderr, "error: '{}' cannot be used: {}\n", (fs::path(directory) / "tokenizer.json").string(),
               info.tokenizer_problem);
    set_exit_code(1);
  }
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "info", "Show a checkpoint's architecture, size, config and tensors, and what is missing or wrong");
  auto directory = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  command->add_option("MODEL_DIR", *directory, "Hugging Face checkpoint directory (config.json + safetensors)")
      ->required();
  command->add_flag("--json", *as_json, "Print one JSON object instead of text");
  command->callback([directory, as_json] {
    set_default_map_mode(MapMode::Map);  // info reads headers, not weights
    run_info(*directory, *as_json);
  });
}

}  // namespace retort::cli
