// Whole-file replacement that survives crashes: write a temporary file beside `path`, fsync it,
// rename it over `path`, fsync the directory. A reader after any crash sees either the old
// contents or the new, never a mix. Blocking: call from a thread that may block.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace sluice {

Status write_file_durably(const std::string& path, std::string_view contents);
// Reads a whole file; an error with code ENOENT when it does not exist.
Result<std::string> read_file(const std::string& path);
// fsyncs a directory (after creating, renaming or removing an entry in it).
Status sync_directory(const std::string& dir);

}  // namespace sluice
