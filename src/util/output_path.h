#pragma once
// The one check every writer runs before it creates an output: an output never replaces what is at
// its path unless that is a regular file the user meant to overwrite. A device (/dev/full), a
// directory or a FIFO would otherwise be replaced by the rename that makes writes atomic, and an
// output that is one of the command's inputs would destroy the data being read.
#include <string>
#include <vector>

namespace retort {

// Refuses `path` unless it is new or an existing regular file, and unless it is none of `inputs`
// (the same file by device and inode, so links and other spellings are caught). An input that is a
// directory stands for the regular files directly inside it (a checkpoint's safetensors, config).
// `what` names the output in the message (e.g. "--out").
void check_output_file(const std::string& path, const std::vector<std::string>& inputs = {},
                       const std::string& what = "the output");

enum class ExistingContents { Refuse, Allow };

// Refuses `path` as an output directory unless it is new or an existing directory (empty, with
// ExistingContents::Refuse), and unless it is none of `inputs` (directories or files).
void check_output_directory(const std::string& path, ExistingContents contents,
                            const std::vector<std::string>& inputs = {},
                            const std::string& what = "the output directory");

}  // namespace retort
