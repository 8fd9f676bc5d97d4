// Whole-file replacement that survives crashes: write a temporary file beside `path`, fsync it,
// rename it over `path`, fsync the directory. A reader after any crash sees either the old
// contents or the new, never a mix. Blocking: call from a thread that may block.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace sluice {

Status write_file_durably(const std::string& path, std::string_view contents);
// The same for several files of one directory ({name, contents}), with one directory fsync:
// every temporary file is written and synced first, then each is renamed in the order given.
// A crash leaves each file old or new; the ones renamed first may be new while later ones are
// still old.
Status write_files_durably(const std::string& dir,
                           const std::vector<std::pair<std::string, std::string_view>>& files);
// Reads a whole file; an error with code ENOENT when it does not exist.
Result<std::string> read_file(const std::string& path);
// fsyncs a directory (after creating, renaming or removing an entry in it).
Status sync_directory(const std::string& dir);

}  // namespace sluice
