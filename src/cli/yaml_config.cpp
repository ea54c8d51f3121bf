#include "cli/yaml_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <sstream>

#include "util/error.h"

namespace retort::cli {

namespace {

std::string flag_name(std::string key) {
  std::replace(key.begin(), key.end(), '_', '-');
  return key;
}

void collect(const YAML::Node& map, std::vector<CLI::ConfigItem>& items) {
  for (const auto& entry : map) {
    const std::string key = entry.first.as<std::string>();
    const YAML::Node& value = entry.second;
    if (value.IsMap()) {
      collect(value, items);  // a section only groups its keys
      continue;
    }
    CLI::ConfigItem item;
    item.name = flag_name(key);
    if (value.IsSequence()) {
      for (const auto& element : value) {
        require(element.IsScalar(), ErrorKind::InvalidInput, "config key '{}' must hold plain values", key);
        item.inputs.push_back(element.as<std::string>());
      }
    } else if (value.IsScalar()) {
      item.inputs.push_back(value.as<std::string>());
    } else {
      continue;  // null: leave the default
    }
    items.push_back(std::move(item));
  }
}

}  // namespace

std::string YamlConfig::to_config(const CLI::App* app, bool default_also, bool, std::string) const {
  std::ostringstream out;
  for (const CLI::Option* option : app->get_options()) {
    if (option->get_lnames().empty() || option->get_configurable() == false) continue;
    const std::string value = option->as<std::string>();
    if (value.empty() && !default_also) continue;
    out << option->get_lnames().front() << ": " << value << "\n";
  }
  return out.str();
}

std::vector<CLI::ConfigItem> YamlConfig::from_config(std::istream& input) const {
  YAML::Node root;
  try {
    root = YAML::Load(input);
  } catch (const YAML::Exception& error) {
    fail(ErrorKind::InvalidInput, "the config file is not valid YAML: {}", error.what());
  }
  if (root.IsNull()) return {};
  require(root.IsMap(), ErrorKind::InvalidInput, "the config file must be a YAML map of flag names to values");
  std::vector<CLI::ConfigItem> items;
  collect(root, items);
  return items;
}

}  // namespace retort::cli
