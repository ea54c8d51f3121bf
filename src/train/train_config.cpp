#include "train/train_config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "train/config_yaml.h"
#include "util/error.h"
#include "util/input_limits.h"
#include "util/yaml_limits.h"

namespace retort::train {

namespace {

template <typename T>
constexpr const char* type_name() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean (true/false)";
  else if constexpr (std::is_integral_v<T>) return "an integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else return "a string";
}

template <typename T>
std::string show(const T& value) {
  if constexpr (std::is_same_v<T, bool>) return value ? "true" : "false";
  else if constexpr (std::is_same_v<T, std::string>) return value.empty() ? "\"\"" : value;
  else return fmt::format("{}", value);
}

// Reads typed values by dotted path, remembering every path asked for so that what is left over
// in the file can be reported as unknown.
class ConfigReader {
 public:
  ConfigReader(YAML::Node root, std::string source) : root_(std::move(root)), source_(std::move(source)) {}

  template <typename T>
  void read(const std::string& path, T& value) {
    known_.insert(path);
    YAML::Node node = find(path);
    const bool given = node.IsDefined() && !node.IsNull();
    if (given) {
      require(node.IsScalar(), ErrorKind::InvalidInput, "{}: '{}' must be {}, not a list or map", source_, path,
              type_name<T>());
      try {
        value = node.as<T>();
      } catch (const YAML::Exception&) {
        fail(ErrorKind::InvalidInput, "{}: '{}' must be {}, got '{}'", source_, path, type_name<T>(),
             echo_excerpt(node.Scalar()));
      }
    }
    entries_.push_back({path, show(value), !given});
  }

  // Every key in the file must be one that was read (or a section holding such keys).
  void reject_unknown() const { walk(root_, ""); }
  std::vector<ConfigEntry> entries() const { return entries_; }

 private:
  YAML::Node find(const std::string& path) const {
    YAML::Node node = YAML::Clone(root_);
    std::stringstream parts(path);
    std::string part;
    while (std::getline(parts, part, '.')) {
      if (!node.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
      node = node[part];
      if (!node.IsDefined()) return node;
    }
    return node;
  }

  void walk(const YAML::Node& node, const std::string& prefix) const {
    if (!node.IsMap()) return;
    for (const auto& item : node) {
      const std::string key = item.first.as<std::string>();
      const std::string path = prefix.empty() ? key : prefix + "." + key;
      if (known_.count(path)) continue;
      const bool section = std::any_of(known_.begin(), known_.end(),
                                       [&](const std::string& k) { return k.rfind(path + ".", 0) == 0; });
      if (!section) {
        std::vector<std::string> siblings;
        for (const auto& k : known_) {
          if (prefix.empty() || k.rfind(prefix + ".", 0) == 0) {
            std::string rest = prefix.empty() ? k : k.substr(prefix.size() + 1);
            siblings.push_back(rest.substr(0, rest.find('.')));
          }
        }
        siblings.erase(std::unique(siblings.begin(), siblings.end()), siblings.end());
        fail(ErrorKind::InvalidInput, "{}: unknown key '{}'; expected one of: {}", source_, echo_excerpt(path),
             fmt::join(std::set<std::string>(siblings.begin(), siblings.end()), ", "));
      }
      require(item.second.IsMap(), ErrorKind::InvalidInput, "{}: '{}' must be a map of settings", source_, path);
      walk(item.second, path);
    }
  }

  YAML::Node root_;
  std::string source_;
  std::set<std::string> known_;
  std::vector<ConfigEntry> entries_;
};

std::string resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || std::filesystem::path(path).is_absolute()) return path;
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

}  // namespace

TrainConfig parse_train_config(const std::string& yaml_text, const std::string& source, const std::string& base_dir,
                               std::vector<ConfigEntry>* entries) {
  const YAML::Node root = parse_config_root(yaml_text, source);
  ConfigReader r(root, source);
  TrainConfig c;
  r.read("model.init", c.model_init);
  r.read("model.config", c.model_config);
  r.read("model.tokenizer", c.tokenizer);
  r.read("model.init_stddev", c.init_stddev);
  r.read("data.train", c.train_file);
  r.read("data.validation", c.validation_file);
  std::string format = std::string(data_format_name(c.format));
  r.read("data.format", format);
  r.read("data.val_fraction", c.val_fraction);
  r.read("data.shuffle", c.shuffle);
  r.read("data.chat_template", c.chat_template);
  r.read("batch_size", c.batch_size);
  r.read("seq_len", c.seq_len);
  r.read("steps", c.steps);
  r.read("grad_accum_steps", c.grad_accum_steps);
  r.read("seed", c.seed);
  r.read("threads", c.threads);
  r.read("log_every", c.log_every);
  r.read("optimizer.type", c.optimizer_type);
  r.read("optimizer.lr", c.adamw.lr);
  r.read("optimizer.weight_decay", c.adamw.weight_decay);
  r.read("optimizer.beta1", c.adamw.beta1);
  r.read("optimizer.beta2", c.adamw.beta2);
  r.read("optimizer.eps", c.adamw.eps);
  r.read("optimizer.grad_clip", c.grad_clip);
  r.read("scheduler.warmup_steps", c.warmup_steps);
  std::string decay = std::string(lr_decay_name(c.decay));
  r.read("scheduler.decay", decay);
  r.read("scheduler.min_lr", c.min_lr);
  r.read("evaluation.every", c.eval_every);
  r.read("evaluation.batches", c.eval_batches);
  r.read("checkpointing.dir", c.output_dir);
  r.read("checkpointing.every", c.save_every);
  r.read("checkpointing.keep_last", c.keep_last);
  r.read("memory.activation_checkpointing", c.activation_checkpointing);
  r.read("memory.mixed_precision", c.mixed_precision);
  r.read("memory.loss_scale.initial", c.loss_scale_initial);
  r.read("memory.loss_scale.growth_interval", c.loss_scale_growth_interval);
  r.read("distributed.enable", c.distributed_enable);
  r.read("distributed.strategy", c.distributed_strategy);
  r.read("distributed.device_num", c.device_num);
  r.read("distributed.allreduce", c.allreduce);
  r.read("distributed.zero", c.zero_stage);
  r.read("distributed.reproducible", c.reproducible);
  r.read("distributed.bucket_mb", c.bucket_mb);
  r.reject_unknown();

  c.format = parse_data_format(format);
  c.decay = parse_lr_decay(decay);
  c.model_init = resolve(base_dir, c.model_init);
  c.model_config = resolve(base_dir, c.model_config);
  c.tokenizer = resolve(base_dir, c.tokenizer);
  c.train_file = resolve(base_dir, c.train_file);
  c.validation_file = resolve(base_dir, c.validation_file);
  c.output_dir = resolve(base_dir, c.output_dir);

  auto check = [&](bool ok, const char* what) { require(ok, ErrorKind::InvalidInput, "{}: {}", source, what); };
  check(c.model_init.empty() != c.model_config.empty(),
        "give exactly one of model.init (an HF directory to start from) and model.config (a config.json for random init)");
  check(!c.train_file.empty(), "data.train (the training data file) is required");
  check(c.batch_size > 0 && c.seq_len > 1 && c.steps > 0 && c.grad_accum_steps > 0,
        "batch_size, steps and grad_accum_steps must be positive and seq_len at least 2");
  check(c.optimizer_type == "AdamW", "optimizer.type: only AdamW is implemented");
  check(c.adamw.lr > 0 && c.adamw.weight_decay >= 0 && c.adamw.eps > 0, "optimizer: lr and eps must be positive, weight_decay ≥ 0");
  check(c.adamw.beta1 >= 0 && c.adamw.beta1 < 1 && c.adamw.beta2 >= 0 && c.adamw.beta2 < 1,
        "optimizer: beta1 and beta2 must be in [0, 1)");
  check(c.warmup_steps >= 0 && c.eval_every >= 0 && c.save_every >= 0 && c.keep_last > 0 && c.log_every > 0,
        "scheduler.warmup_steps, evaluation.every and checkpointing.every must be ≥ 0; keep_last and log_every > 0");
  check(c.mixed_precision == "none" || c.mixed_precision == "bf16" || c.mixed_precision == "fp16",
        "memory.mixed_precision must be none, bf16 or fp16");
  check(c.loss_scale_initial >= 1 && std::isfinite(c.loss_scale_initial) && c.loss_scale_growth_interval > 0,
        "memory.loss_scale: initial must be a finite number ≥ 1 and growth_interval a positive number of steps");
  check(c.threads >= 0, "threads must be ≥ 0 (0: all hardware threads)");
  check(c.distributed_strategy == "collective" || c.distributed_strategy == "data_parallel",
        "distributed.strategy must be collective (data parallel: gradients allreduced)");
  check(c.device_num > 0, "distributed.device_num must be positive (the number of MPI ranks)");
  check(c.allreduce == "flat" || c.allreduce == "hierarchical", "distributed.allreduce must be flat or hierarchical");
  check(c.zero_stage == 0 || c.zero_stage == 1,
        "distributed.zero must be 0 (every rank holds all optimizer state) or 1 (Adam moments sharded over the "
        "ranks, ZeRO stage 1); stages 2 and 3 are not implemented");
  check(c.bucket_mb >= 0 && c.bucket_mb <= 1 << 20,
        "distributed.bucket_mb must be between 0 (sum the gradients after the backward pass) and 1048576 MiB (25 is "
        "PyTorch DDP's default bucket)");
  if (entries != nullptr) *entries = r.entries();
  return c;
}

YAML::Node parse_config_root(const std::string& yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    fail(ErrorKind::InvalidInput, "{}: not valid YAML: {}", source, echo_excerpt(e.what()));
  }
  check_yaml_shape(root, source);
  require(root.IsMap(), ErrorKind::InvalidInput, "{}: expected a map of settings at the top level", source);
  return root;
}

ConfigFileText read_config_file(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  require(in.good(), ErrorKind::NotFound, "cannot open {} config '{}'", what, path);
  std::stringstream text;
  text << in.rdbuf();
  const std::string base = std::filesystem::path(path).parent_path().string();
  return {text.str(), base.empty() ? "." : base};
}

TrainConfig load_train_config(const std::string& path, std::vector<ConfigEntry>* entries) {
  const ConfigFileText file = read_config_file(path, "training");
  return parse_train_config(file.text, path, file.base_dir, entries);
}

}  // namespace retort::train
