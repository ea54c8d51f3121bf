#include "cli/yaml_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <vector>

#include "util/error.h"
#include "util/input_limits.h"
#include "util/mapped_file.h"
#include "util/yaml_limits.h"

namespace retort::cli {

namespace {

struct ConfigEntry {
  std::string key;  // as written in the file
  std::vector<std::string> values;
};

// A list element: a plain value, or a {name: …, path: …} map, which stands for "NAME=PATH" (serve's
// `models:` list reads more naturally that way than as NAME=PATH strings, which work too).
std::string list_value(const std::string& key, const YAML::Node& element) {
  if (element.IsMap() && element.size() == 2 && element["name"] && element["path"] && element["name"].IsScalar() &&
      element["path"].IsScalar()) {
    return element["name"].as<std::string>() + "=" + element["path"].as<std::string>();
  }
  require(element.IsScalar(), ErrorKind::InvalidInput,
          "config key '{}' must hold plain values (or {{name: …, path: …}} maps)", echo_excerpt(key));
  return element.as<std::string>();
}

void collect(const YAML::Node& map, std::vector<ConfigEntry>& entries) {
  for (const auto& item : map) {
    const std::string key = item.first.as<std::string>();
    const YAML::Node& value = item.second;
    if (value.IsMap()) {
      collect(value, entries);  // a section only groups its keys
      continue;
    }
    ConfigEntry entry{key, {}};
    if (value.IsSequence()) {
      for (const auto& element : value) entry.values.push_back(list_value(key, element));
    } else if (value.IsScalar()) {
      entry.values.push_back(value.as<std::string>());
    } else {
      continue;  // null: leave the default
    }
    entries.push_back(std::move(entry));
  }
}

CLI::Option* find_option(CLI::App& command, std::string key) {
  std::replace(key.begin(), key.end(), '_', '-');
  if (key == "model") return command.get_option_no_throw("MODEL");
  if (key == "models") return command.get_option_no_throw("--model");  // a list of the repeatable --model
  if (key == "config") return nullptr;
  return command.get_option_no_throw("--" + key);
}

}  // namespace

void apply_yaml_config(CLI::App& command, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(read_text_file(path));
  } catch (const YAML::Exception& error) {
    fail(ErrorKind::InvalidInput, "the config file '{}' is not valid YAML: {}", path, echo_excerpt(error.what()));
  }
  check_yaml_shape(root, "the config file '" + path + "'");
  if (root.IsNull()) return;
  require(root.IsMap(), ErrorKind::InvalidInput, "the config file '{}' must be a YAML map of flag names to values", path);
  std::vector<ConfigEntry> entries;
  collect(root, entries);
  for (const auto& entry : entries) {
    CLI::Option* option = find_option(command, entry.key);
    require(option != nullptr, ErrorKind::InvalidInput,
            "the config file '{}' has the key '{}', which is not a flag of `retort {}`; see --help", path,
            echo_excerpt(entry.key), command.get_name());
    if (option->count() > 0) continue;  // given on the command line
    try {
      option->clear();
      for (const auto& value : entry.values) option->add_result(value);
      option->run_callback();
    } catch (const CLI::Error& error) {
      fail(ErrorKind::InvalidInput, "the config file '{}': '{}' {}", path, echo_excerpt(entry.key),
           echo_excerpt(error.what()));
    }
  }
}

}  // namespace retort::cli
