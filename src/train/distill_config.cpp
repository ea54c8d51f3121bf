#include "train/distill_config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "train/config_yaml.h"
#include "util/error.h"

namespace retort::train {

namespace {

constexpr const char* kSections[] = {"teacher", "student", "distill", "generate"};

// Typed reads from the distillation sections; every key read is remembered so that the rest can
// be reported as unknown (the training sections are checked by parse_train_config).
class SectionReader {
 public:
  SectionReader(YAML::Node root, std::string source, std::vector<ConfigEntry>& entries)
      : root_(std::move(root)), source_(std::move(source)), entries_(entries) {}

  template <typename T>
  void read(const std::string& path, T& value) {
    known_.insert(path);
    YAML::Node node = find(path);
    const bool given = node.IsDefined() && !node.IsNull();
    if (given) {
      require(node.IsScalar(), ErrorKind::InvalidInput, "{}: '{}' must be a single value, not a list or map", source_,
              path);
      try {
        value = node.as<T>();
      } catch (const YAML::Exception&) {
        fail(ErrorKind::InvalidInput, "{}: '{}' must be {}, got '{}'", source_, path,
             std::is_same_v<T, bool> ? "true or false" : std::is_arithmetic_v<T> ? "a number" : "a string",
             node.Scalar());
      }
    }
    entries_.push_back({path, fmt::format("{}", value), !given});
  }

  // A list of integers, or a list of [student, teacher] pairs.
  void read_ints(const std::string& path, std::vector<int64_t>& values) {
    known_.insert(path);
    YAML::Node node = find(path);
    if (node.IsDefined() && !node.IsNull()) {
      require(node.IsSequence(), ErrorKind::InvalidInput, "{}: '{}' must be a list of integers", source_, path);
      try {
        for (const auto& item : node) values.push_back(item.as<int64_t>());
      } catch (const YAML::Exception&) {
        fail(ErrorKind::InvalidInput, "{}: '{}' must be a list of integers", source_, path);
      }
    }
    entries_.push_back({path, fmt::format("[{}]", fmt::join(values, ", ")), !node.IsDefined()});
  }

  void read_pairs(const std::string& path, std::vector<LayerPair>& pairs) {
    known_.insert(path);
    YAML::Node node = find(path);
    const char* expected = "a list of [student, teacher] index pairs, e.g. [[1, 2], [2, 4]]";
    if (node.IsDefined() && !node.IsNull()) {
      require(node.IsSequence(), ErrorKind::InvalidInput, "{}: '{}' must be {}", source_, path, expected);
      for (const auto& item : node) {
        require(item.IsSequence() && item.size() == 2, ErrorKind::InvalidInput, "{}: '{}' must be {}", source_, path,
                expected);
        try {
          pairs.push_back({item[0].as<int64_t>(), item[1].as<int64_t>()});
        } catch (const YAML::Exception&) {
          fail(ErrorKind::InvalidInput, "{}: '{}' must be {}", source_, path, expected);
        }
      }
    }
    std::string shown;
    for (const auto& p : pairs) shown += fmt::format("{}[{}, {}]", shown.empty() ? "" : ", ", p.student, p.teacher);
    entries_.push_back({path, "[" + shown + "]", !node.IsDefined()});
  }

  void reject_unknown(const YAML::Node& node, const std::string& prefix) const {
    if (!node.IsDefined() || node.IsNull()) return;
    require(node.IsMap(), ErrorKind::InvalidInput, "{}: '{}' must be a map of settings", source_, prefix);
    for (const auto& item : node) {
      const std::string path = prefix + "." + item.first.as<std::string>();
      if (known_.count(path)) continue;
      const bool section = std::any_of(known_.begin(), known_.end(),
                                       [&](const std::string& k) { return k.rfind(path + ".", 0) == 0; });
      if (!section) {
        std::set<std::string> siblings;
        for (const auto& k : known_)
          if (k.rfind(prefix + ".", 0) == 0) {
            const std::string rest = k.substr(prefix.size() + 1);
            siblings.insert(rest.substr(0, rest.find('.')));
          }
        fail(ErrorKind::InvalidInput, "{}: unknown key '{}'; expected one of: {}", source_, path,
             fmt::join(siblings, ", "));
      }
      reject_unknown(item.second, path);
    }
  }

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

  YAML::Node root_;
  std::string source_;
  std::vector<ConfigEntry>& entries_;
  std::set<std::string> known_;
};

std::string resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || std::filesystem::path(path).is_absolute()) return path;
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

}  // namespace

Weighting parse_weighting(const std::string& name) {
  if (name == "constant") return Weighting::Constant;
  if (name == "soft_to_hard") return Weighting::SoftToHard;
  if (name == "normalized") return Weighting::Normalized;
  fail(ErrorKind::InvalidInput, "distill.weighting: unknown '{}'; expected constant, soft_to_hard or normalized", name);
}

std::string_view weighting_name(Weighting w) {
  switch (w) {
    case Weighting::Constant: return "constant";
    case Weighting::SoftToHard: return "soft_to_hard";
    case Weighting::Normalized: return "normalized";
  }
  return "?";
}

DistillConfig parse_distill_config(const std::string& yaml_text, const std::string& source, const std::string& base_dir,
                                   std::vector<ConfigEntry>* entries_out) {
  const YAML::Node root = parse_config_root(yaml_text, source);
  // The distillation sections are read here; everything else is a training config, parsed (and
  // checked for unknown keys) by the same code as `retort train`.
  YAML::Node mine(YAML::NodeType::Map), rest(YAML::NodeType::Map);
  for (const auto& item : root) {
    const std::string key = item.first.as<std::string>();
    const bool distill_key = std::any_of(std::begin(kSections), std::end(kSections), [&](const char* s) { return key == s; });
    (distill_key ? mine : rest)[key] = item.second;
  }
  std::vector<ConfigEntry> entries;
  DistillConfig c;
  SectionReader r(mine, source, entries);
  r.read("teacher.model", c.teacher_model);
  r.read("teacher.tokenizer", c.teacher_tokenizer);
  r.read("student.from_teacher", c.student.from_teacher);
  r.read_ints("student.layers", c.student.layers);
  r.read("student.every", c.student.every);
  r.read("student.intermediate_size", c.student.intermediate_size);
  r.read("distill.weights.hard", c.w_hard);
  r.read("distill.weights.soft", c.w_soft);
  r.read("distill.weights.hidden", c.w_hidden);
  r.read("distill.weights.attention", c.w_attention);
  std::string weighting = "constant", soft_kind = "forward_kl", hidden_kind = "mse", attention_kind = "kl";
  r.read("distill.weighting", weighting);
  r.read("distill.ema_decay", c.ema_decay);
  r.read("distill.soft.loss", soft_kind);
  r.read("distill.soft.temperature", c.soft.temperature);
  r.read("distill.soft.beta", c.soft.beta);
  r.read("distill.soft.top_k", c.top_k);
  r.read("distill.chunk_rows", c.chunk_rows);
  r.read("distill.hidden.loss", hidden_kind);
  r.read_pairs("distill.hidden.layer_map", c.hidden_map);
  r.read("distill.attention.loss", attention_kind);
  r.read_pairs("distill.attention.layer_map", c.attention_map);
  r.read("generate.prompts", c.generate.prompts);
  r.read("generate.output", c.generate.output);
  r.read("generate.temperature", c.generate.temperature);
  r.read("generate.top_p", c.generate.top_p);
  r.read("generate.top_k", c.generate.top_k);
  r.read("generate.max_tokens", c.generate.max_tokens);
  r.read("generate.seed", c.generate.seed);
  r.read("generate.chat_template", c.generate.chat_template);
  for (const char* s : kSections) r.reject_unknown(mine[s], s);

  auto check = [&](bool ok, const std::string& what) { require(ok, ErrorKind::InvalidInput, "{}: {}", source, what); };
  check(!c.teacher_model.empty(), "teacher.model (the teacher's HF checkpoint directory) is required");
  c.weighting = parse_weighting(weighting);
  c.soft.kind = parse_soft_loss_kind(soft_kind);
  c.hidden_loss = parse_hidden_loss_kind(hidden_kind);
  c.attention_loss = parse_attention_loss_kind(attention_kind);
  c.teacher_model = resolve(base_dir, c.teacher_model);
  c.teacher_tokenizer = c.teacher_tokenizer.empty() ? c.teacher_model : resolve(base_dir, c.teacher_tokenizer);
  c.generate.prompts = resolve(base_dir, c.generate.prompts);
  c.generate.output = resolve(base_dir, c.generate.output);
  check(c.w_hard >= 0 && c.w_soft >= 0 && c.w_hidden >= 0 && c.w_attention >= 0 &&
            c.w_hard + c.w_soft + c.w_hidden + c.w_attention > 0,
        "distill.weights must be ≥ 0 and not all 0");
  check(c.soft.temperature > 0, "distill.soft.temperature must be positive");
  check(c.soft.kind != SoftLossKind::JSD || (c.soft.beta > 0 && c.soft.beta < 1), "distill.soft.beta must be in (0, 1)");
  check(c.top_k >= 0 && (c.top_k == 0 || c.soft.kind == SoftLossKind::ForwardKL),
        "distill.soft.top_k (≥ 0) works with loss forward_kl only: the other divergences need the whole teacher "
        "distribution");
  check(c.chunk_rows > 0, "distill.chunk_rows must be positive");
  check(c.ema_decay >= 0 && c.ema_decay < 1, "distill.ema_decay must be in [0, 1)");
  check(c.w_hidden == 0 || !c.hidden_map.empty(), "distill.weights.hidden > 0 needs distill.hidden.layer_map");
  check(c.w_attention == 0 || !c.attention_map.empty(), "distill.weights.attention > 0 needs distill.attention.layer_map");
  check(!c.student.from_teacher || (c.student.layers.empty() != (c.student.every == 0)),
        "student.from_teacher needs exactly one of student.layers (teacher layers to keep) and student.every");
  check(c.student.every >= 0 && c.student.intermediate_size >= 0, "student.every and intermediate_size must be ≥ 0");
  check(c.generate.temperature >= 0 && c.generate.top_p > 0 && c.generate.top_p <= 1 && c.generate.max_tokens > 0,
        "generate: temperature ≥ 0, top_p in (0, 1], max_tokens > 0");

  if (c.student.from_teacher) {
    const YAML::Node model = rest["model"];
    check(!model.IsDefined() || (!model["init"].IsDefined() && !model["config"].IsDefined()),
          "student.from_teacher builds the student from the teacher: leave out model.init and model.config");
    rest["model"]["init"] = "student-init";  // replaced below by checkpointing.dir/student-init
  }
  std::stringstream text;
  text << rest;
  std::vector<ConfigEntry> train_entries;
  c.train = parse_train_config(text.str(), source, base_dir, &train_entries);
  if (c.student.from_teacher)
    c.train.model_init = (std::filesystem::path(c.train.output_dir) / "student-init").string();
  train_entries.insert(train_entries.end(), entries.begin(), entries.end());
  if (entries_out != nullptr) *entries_out = std::move(train_entries);
  return c;
}

DistillConfig load_distill_config(const std::string& path, std::vector<ConfigEntry>* entries) {
  const ConfigFileText file = read_config_file(path, "distillation");
  return parse_distill_config(file.text, path, file.base_dir, entries);
}

}  // namespace retort::train
