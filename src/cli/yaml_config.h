#pragma once
// Lets a subcommand read its flags from a YAML file (`--config serve.yaml`): each key names a long
// flag (underscores or dashes; `model` is the MODEL argument, `models` the repeatable --model),
// nested maps only group keys, lists give repeated values ({name: N, path: P} elements give "N=P"). Flags on the command line win over the file; unknown keys are errors.
// (CLI11 reads config files for the root app only, so subcommands apply them here.)
#include <string>

#include <CLI/CLI.hpp>

namespace retort::cli {

// Call from the subcommand's callback, after parsing: fills every option the command line left
// unset from the file and re-runs its callback.
void apply_yaml_config(CLI::App& command, const std::string& path);

}  // namespace retort::cli
