#include "eval/pipeline_config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "train/config_yaml.h"
#include "train/train_config.h"
#include "util/error.h"

namespace retort {

namespace {

namespace fs = std::filesystem;

std::string resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

// The pipeline's own keys are few and flat under their sections: each read names its full path,
// and whatever the file holds besides them (outside the inline train/distill configs, which their
// own parsers check) is reported as unknown.
class PipelineReader {
 public:
  PipelineReader(const YAML::Node& root, std::string source) : root_(root), source_(std::move(source)) {}

  YAML::Node node(const std::string& section, const std::string& key) {
    known_[section].insert(key);
    const YAML::Node parent = section.empty() ? root_ : root_[section];
    if (!parent.IsDefined() || parent.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
    require(parent.IsMap(), ErrorKind::InvalidInput, "{}: '{}' must be a map of settings", source_, section);
    return parent[key];
  }

  template <typename T>
  void read(const std::string& section, const std::string& key, T& value) {
    const YAML::Node n = node(section, key);
    if (!n.IsDefined() || n.IsNull()) return;
    const std::string path = section.empty() ? key : section + "." + key;
    require(n.IsScalar(), ErrorKind::InvalidInput, "{}: '{}' must be a single value, not a list or map", source_, path);
    try {
      value = n.as<T>();
    } catch (const YAML::Exception&) {
      fail(ErrorKind::InvalidInput, "{}: '{}' must be {}, got '{}'", source_, path,
           std::is_same_v<T, bool> ? "true or false" : std::is_arithmetic_v<T> ? "a number" : "a string", n.Scalar());
    }
  }

  void reject_unknown() const {
    for (const auto& [section, keys] : known_) {
      const YAML::Node parent = section.empty() ? root_ : root_[section];
      if (!parent.IsMap()) continue;
      for (const auto& item : parent) {
        const std::string key = item.first.as<std::string>();
        if (keys.count(key) || (section.empty() && known_.count(key))) continue;
        fail(ErrorKind::InvalidInput, "{}: unknown key '{}{}'; expected one of: {}", source_,
             section.empty() ? "" : section + ".", key, fmt::join(keys, ", "));
      }
    }
  }

 private:
  YAML::Node root_;
  std::string source_;
  std::map<std::string, std::set<std::string>> known_;
};

std::string as_yaml_text(const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return out.c_str();
}

// FNV-1a: a stable name for a text (not a defence against anyone).
std::string text_fingerprint(const std::string& text) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  return fmt::format("{:016x}", hash);
}

}  // namespace

PipelineConfig parse_pipeline_config(const std::string& yaml_text, const std::string& source,
                                     const std::string& base_dir) {
  const YAML::Node root = train::parse_config_root(yaml_text, source);
  PipelineReader r(root, source);
  PipelineConfig c;
  c.source = source;
  c.base_dir = base_dir;
  c.fingerprint = text_fingerprint(as_yaml_text(root));
  r.read("", "dir", c.dir);
  require(!c.dir.empty(), ErrorKind::InvalidInput, "{}: 'dir' (where the pipeline writes its stages) is required", source);
  c.dir = resolve(base_dir, c.dir);

  r.read("teacher", "model", c.teacher_model);
  c.teacher_model = resolve(base_dir, c.teacher_model);
  const YAML::Node teacher_train = r.node("teacher", "train");
  if (teacher_train.IsDefined() && !teacher_train.IsNull()) {
    require(teacher_train.IsMap(), ErrorKind::InvalidInput, "{}: 'teacher.train' must be a `retort train` config (a map)",
            source);
    c.teacher_train_yaml = as_yaml_text(teacher_train);
  }
  require(c.teacher_model.empty() != c.teacher_train_yaml.empty(), ErrorKind::InvalidInput,
          "{}: give the teacher either as 'teacher.model' (a trained HF directory) or as 'teacher.train' (a training "
          "config), not {}", source, c.teacher_model.empty() ? "neither" : "both");

  const YAML::Node distill = r.node("student", "distill");
  require(distill.IsDefined() && distill.IsMap(), ErrorKind::InvalidInput,
          "{}: 'student.distill' (a `retort distill` config, without teacher.model) is required", source);
  c.student_distill_yaml = as_yaml_text(distill);
  r.read("student", "baseline", c.baseline);

  const YAML::Node types = r.node("quantize", "types");
  if (types.IsDefined() && !types.IsNull()) {
    require(types.IsSequence(), ErrorKind::InvalidInput, "{}: 'quantize.types' must be a list such as [q8_0, q4_k]",
            source);
    c.quantize.clear();
    for (const auto& type : types) c.quantize.push_back(parse_quant_recipe(type.as<std::string>()));
  }

  r.read("evaluate", "text", c.eval_text);
  require(!c.eval_text.empty(), ErrorKind::InvalidInput,
          "{}: 'evaluate.text' (held-out text for perplexity and KL) is required", source);
  c.eval_text = resolve(base_dir, c.eval_text);
  r.read("evaluate", "context", c.context);
  r.read("evaluate", "chunks", c.chunks);
  r.read("evaluate", "prompt_tokens", c.prompt_tokens);
  r.read("evaluate", "decode_tokens", c.decode_tokens);
  r.read("evaluate", "threads", c.threads);
  require(c.context >= 8 && c.chunks >= 0 && c.prompt_tokens >= 1 && c.decode_tokens >= 1, ErrorKind::InvalidInput,
          "{}: evaluate needs context ≥ 8, chunks ≥ 0, prompt_tokens ≥ 1 and decode_tokens ≥ 1", source);

  const YAML::Node classify = r.node("evaluate", "classify");
  if (classify.IsDefined() && !classify.IsNull()) {
    PipelineReader cr(root["evaluate"], source + ": evaluate");
    PipelineClassifyConfig k;
    cr.read("classify", "data", k.data);
    cr.read("classify", "labels", k.labels);
    cr.read("classify", "text_column", k.text_column);
    cr.read("classify", "label_column", k.label_column);
    cr.read("classify", "limit", k.limit);
    cr.reject_unknown();
    require(!k.data.empty() && !k.labels.empty(), ErrorKind::InvalidInput,
            "{}: 'evaluate.classify' needs 'data' (a CSV) and 'labels' (a JSON array of the labels)", source);
    k.data = resolve(base_dir, k.data);
    k.labels = resolve(base_dir, k.labels);
    c.classify = k;
  }
  const YAML::Node bleu = r.node("evaluate", "bleu");
  if (bleu.IsDefined() && !bleu.IsNull()) {
    PipelineReader br(root["evaluate"], source + ": evaluate");
    PipelineBleuConfig b;
    br.read("bleu", "data", b.data);
    br.read("bleu", "max_tokens", b.max_tokens);
    br.reject_unknown();
    require(!b.data.empty() && b.max_tokens >= 1, ErrorKind::InvalidInput,
            "{}: 'evaluate.bleu' needs 'data' (JSONL of prompt/reference lines) and max_tokens ≥ 1", source);
    b.data = resolve(base_dir, b.data);
    c.bleu = b;
  }
  r.read("serve", "port", c.serve_port);
  r.reject_unknown();
  return c;
}

PipelineConfig load_pipeline_config(const std::string& path) {
  const train::ConfigFileText file = train::read_config_file(path, "pipeline");
  return parse_pipeline_config(file.text, path, file.base_dir);
}

}  // namespace retort
