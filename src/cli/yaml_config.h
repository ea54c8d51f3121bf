#pragma once
// Lets a subcommand read its flags from a YAML file (`--config serve.yaml`): each key names a long
// flag (underscores or dashes), nested maps only group keys, lists give repeated values. Flags on
// the command line win over the file.
#include <CLI/CLI.hpp>

namespace retort::cli {

class YamlConfig : public CLI::Config {
 public:
  std::string to_config(const CLI::App* app, bool default_also, bool write_description, std::string prefix) const override;
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;
};

}  // namespace retort::cli
