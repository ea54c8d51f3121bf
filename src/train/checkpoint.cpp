#include "train/checkpoint.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/safetensors.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/input_limits.h"

namespace retort::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kOptimizerFile = "optimizer.safetensors";

std::string step_dir_name(int64_t step) { return fmt::format("step-{:08d}", step); }

std::optional<int64_t> step_of(const fs::path& dir) {
  const std::string name = dir.filename().string();
  if (name.size() != 13 || name.rfind("step-", 0) != 0) return std::nullopt;
  if (!std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  return std::stoll(name.substr(5));
}

std::vector<std::pair<int64_t, fs::path>> complete_checkpoints(const std::string& output_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  if (!fs::is_directory(output_dir)) return found;
  for (const auto& entry : fs::directory_iterator(output_dir)) {
    auto step = step_of(entry.path());
    if (step && entry.is_directory() && fs::exists(entry.path() / kStateFile)) found.emplace_back(*step, entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  require(in.good(), ErrorKind::NotFound, "cannot read '{}'", path.string());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The numbers that decide whether two configs describe the same parameter set.
std::string shape_signature(const ModelConfig& c) {
  return fmt::format("{} hidden_size {} intermediate_size {} layers {} heads {} kv_heads {} head_dim {} vocab {} tied {} bias {}",
                     architecture_name(c.arch), c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads,
                     c.num_kv_heads, c.head_dim, c.vocab_size, c.tie_word_embeddings, c.attention_bias);
}

}  // namespace

std::string save_checkpoint(const std::string& output_dir, const CheckpointContents& contents, int64_t keep_last,
                            const std::function<void(const std::string& dir)>& write_extra) {
  fs::create_directories(output_dir);
  const fs::path final_dir = fs::path(output_dir) / step_dir_name(contents.state.step);
  const fs::path temp_dir = fs::path(output_dir) / fmt::format(".{}.tmp-{}", step_dir_name(contents.state.step), getpid());
  fs::remove_all(temp_dir);
  fs::create_directories(temp_dir);

  ModelConfig config = *contents.config;
  config.torch_dtype = "float32";  // the weights are written as the f32 master copy, exactly
  write_file_atomically((temp_dir / "config.json").string(), to_hf_config(config).dump(2) + "\n");
  write_safetensors((temp_dir / "model.safetensors").string(), parameter_tensors(*contents.layout, contents.params),
                    {{"format", "pt"}});
  if (contents.moments != nullptr) {
    std::vector<TensorToWrite> moments;
    const size_t total = contents.layout->total;
    for (const char* which : {"exp_avg", "exp_avg_sq"}) {
      const float* base = contents.moments + (std::strcmp(which, "exp_avg") == 0 ? 0 : total);
      for (TensorToWrite t : parameter_tensors(*contents.layout, base)) {
        t.name = std::string(which) + "." + t.name;
        moments.push_back(std::move(t));
      }
    }
    write_safetensors((temp_dir / kOptimizerFile).string(), moments);
  }
  if (!contents.tokenizer_dir.empty()) {
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
      const fs::path from = fs::path(contents.tokenizer_dir) / name;
      if (fs::exists(from)) write_file_atomically((temp_dir / name).string(), read_text(from));
    }
  }
  const TrainerState& s = contents.state;
  nlohmann::json state{{"step", s.step},         {"data_epoch", s.data.epoch}, {"data_index", s.data.index},
                       {"seed", s.seed},         {"rng_state", s.rng_state},   {"tokens_seen", s.tokens_seen},
                       {"model", shape_signature(*contents.config)}};
  // Absent means one process, so a single-process run's checkpoints keep their earlier bytes.
  if (s.ranks > 1) state["ranks"] = s.ranks;
  if (s.loss_scale > 0) {
    state["loss_scale"] = s.loss_scale;
    state["loss_scale_good_steps"] = s.loss_scale_good_steps;
    state["skipped_steps"] = s.skipped_steps;
  }
  if (write_extra) write_extra(temp_dir.string());
  // Written last: its presence marks the checkpoint complete.
  write_file_atomically((temp_dir / kStateFile).string(), state.dump(2) + "\n");
  fs::remove_all(final_dir);
  fs::rename(temp_dir, final_dir);

  auto all = complete_checkpoints(output_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i) fs::remove_all(all[i].second);
  return final_dir.string();
}

int remove_stale_checkpoint_temps(const std::string& output_dir) {
  std::error_code error;
  if (!fs::is_directory(output_dir, error)) return 0;
  int removed = 0;
  for (const auto& entry : fs::directory_iterator(output_dir, error)) {
    const std::string name = entry.path().filename().string();
    const size_t marker = name.rfind(".tmp-");
    if (name.rfind(".step-", 0) != 0 || marker == std::string::npos) continue;
    const std::string pid_text = name.substr(marker + 5);
    if (pid_text.empty() || !std::all_of(pid_text.begin(), pid_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    // A live writer (another process on this directory) keeps its directory.
    const long pid = std::stol(pid_text.substr(0, 9));
    if (pid == getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    fs::remove_all(entry.path(), error);
    if (!error) ++removed;
  }
  return removed;
}

std::optional<std::string> latest_checkpoint(const std::string& output_dir) {
  auto all = complete_checkpoints(output_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second.string();
}

TrainerState load_checkpoint(const std::string& dir, const ModelConfig& config, const ParameterLayout& layout,
                             float* params, float* moments) {
  const fs::path path(dir);
  require(fs::exists(path / kStateFile), ErrorKind::NotFound,
          "'{}' is not a complete retort training checkpoint (no {})", dir, kStateFile);
  const TrainerState state = read_trainer_state((path / kStateFile).string());  // checked before the big reads
  const ModelConfig saved = load_hf_config((path / "config.json").string());
  require(shape_signature(saved) == shape_signature(config), ErrorKind::InvalidInput,
          "cannot resume from '{}': it is a checkpoint of another model ({}) but this run trains ({}); use a fresh "
          "checkpointing.dir or the matching model", dir, shape_signature(saved), shape_signature(config));
  auto checkpoint = Checkpoint::open_directory(dir);
  load_parameters(layout, *checkpoint, params);
  if (moments != nullptr) {
    SafetensorsFile optimizer((path / kOptimizerFile).string());
    for (const auto& info : layout.tensors) {
      for (int which = 0; which < 2; ++which) {
        const std::string name = std::string(which == 0 ? "exp_avg." : "exp_avg_sq.") + info.name;
        auto it = std::find_if(optimizer.tensors().begin(), optimizer.tensors().end(),
                               [&](const TensorView& t) { return t.name == name; });
        require(it != optimizer.tensors().end() && it->dtype == DType::F32 && size_t(it->element_count()) == info.count,
                ErrorKind::InvalidInput, "{}/{}: moment '{}' is missing or has the wrong shape", dir, kOptimizerFile, name);
        std::memcpy(moments + (which == 0 ? 0 : layout.total) + info.offset, it->data, info.count * sizeof(float));
      }
    }
  }
  return state;
}

TrainerState read_trainer_state(const std::string& path) {
  TrainerState s;
  try {
    const auto state_json = parse_json_bounded(read_text(path), "'" + path + "'");
    s.step = json_integer<int64_t>(state_json, "step");
    s.data = {json_integer<int64_t>(state_json, "data_epoch"), json_integer<int64_t>(state_json, "data_index")};
    s.seed = json_integer<uint64_t>(state_json, "seed");
    s.rng_state = json_integer<uint64_t>(state_json, "rng_state");
    s.tokens_seen = json_integer<int64_t>(state_json, "tokens_seen");
    s.ranks = json_integer_or<int64_t>(state_json, "ranks", 1);
    s.loss_scale = state_json.value("loss_scale", 0.0);
    s.loss_scale_good_steps = json_integer_or<int64_t>(state_json, "loss_scale_good_steps", 0);
    s.skipped_steps = json_integer_or<int64_t>(state_json, "skipped_steps", 0);
  } catch (const nlohmann::json::exception& error) {
    // Malformed text, a missing field or one of the wrong type: the checkpoint is damaged.
    fail(ErrorKind::InvalidInput,
         "'{}' is not a valid retort trainer state ({}); expected an object with integer step, data_epoch, "
         "data_index, seed, rng_state and tokens_seen. Resume from an earlier checkpoint (remove this step's "
         "directory) or start a new run",
         path, echo_excerpt(error.what()));
  }
  require(s.step >= 0 && s.data.epoch >= 0 && s.data.index >= 0 && s.tokens_seen >= 0 && s.ranks >= 1,
          ErrorKind::InvalidInput, "'{}': step, data_epoch, data_index and tokens_seen must be >= 0 and ranks >= 1; "
          "the checkpoint is damaged: resume from an earlier one or start a new run", path);
  return s;
}

}  // namespace retort::train
