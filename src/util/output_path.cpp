#include "util/output_path.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include "util/error.h"

namespace retort {

namespace {

namespace fs = std::filesystem;

// stat() through symlinks (a link to the input is the input); nullopt when nothing is there.
std::optional<struct stat> stat_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return st;
  if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
  fail(ErrorKind::Io, "cannot examine '{}': {}", path, std::strerror(errno));
}

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISREG(mode)) return "a regular file";
  return "not a regular file";
}

// An input directory stands for the files directly inside it (a checkpoint's tensors and config).
void refuse_files_of_input_directory(const struct stat& output, const std::string& path, const std::string& input,
                                     const std::string& what) {
  std::error_code error;
  for (fs::directory_iterator it(input, fs::directory_options::skip_permission_denied, error), end;
       !error && it != end; it.increment(error)) {
    const auto entry = stat_of(it->path().string());
    if (entry && S_ISREG(entry->st_mode) && same_file(*entry, output)) {
      fail(ErrorKind::InvalidInput,
           "{} '{}' is '{}', one of the input files in '{}'; writing it would destroy the input. Write to a new path",
           what, path, it->path().string(), input);
    }
  }
}

void refuse_inputs(const struct stat& output, const std::string& path, const std::vector<std::string>& inputs,
                   const std::string& what) {
  for (const std::string& input : inputs) {
    const auto found = stat_of(input);
    if (!found) continue;
    require(!same_file(*found, output), ErrorKind::InvalidInput,
            "{} '{}' is the input '{}'; writing it would destroy the input. Write to a new path", what, path, input);
    if (S_ISDIR(found->st_mode) && S_ISREG(output.st_mode)) refuse_files_of_input_directory(output, path, input, what);
  }
}

}  // namespace

void check_output_file(const std::string& path, const std::vector<std::string>& inputs, const std::string& what) {
  require(!path.empty(), ErrorKind::InvalidInput, "{} is an empty path; give a file name", what);
  const auto found = stat_of(path);
  if (!found) return;  // a new path: nothing to lose
  // The atomic write renames a new file over the path, which would replace a device node, a FIFO
  // or (if empty) a directory with a regular file.
  require(S_ISREG(found->st_mode), ErrorKind::InvalidInput,
          "{} '{}' is {}; retort writes only to a new path or over a regular file. Give a file path", what, path,
          kind_of(found->st_mode));
  refuse_inputs(*found, path, inputs, what);
}

void check_output_directory(const std::string& path, ExistingContents contents, const std::vector<std::string>& inputs,
                            const std::string& what) {
  require(!path.empty(), ErrorKind::InvalidInput, "{} is an empty path; give a directory name", what);
  const auto found = stat_of(path);
  if (!found) return;
  require(S_ISDIR(found->st_mode), ErrorKind::InvalidInput,
          "{} '{}' is {}, not a directory; give a new or empty directory", what, path, kind_of(found->st_mode));
  refuse_inputs(*found, path, inputs, what);
  if (contents == ExistingContents::Refuse) {
    std::error_code error;
    const bool empty = fs::is_empty(path, error);
    require(!error, ErrorKind::Io, "cannot list '{}': {}", path, error.message());
    require(empty, ErrorKind::InvalidInput,
            "{} '{}' is not empty; retort would mix its files with those already there. Give a new or empty directory",
            what, path);
  }
}

}  // namespace retort
