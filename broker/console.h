// The web console's files (broker/console/), embedded in the binary at build time by
// cmake/embed_files.cmake, and served by the admin listener at / (admin_console.cc).
#pragma once

#include <cstddef>
#include <string_view>

namespace sluice::broker::console {

struct EmbeddedFile {
  std::string_view path;   // "/index.html", "/console.js", ...
  std::string_view bytes;
};

extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kEmbeddedFileCount;

// The file served at `path` ("/" is "/index.html"); null when there is none.
const EmbeddedFile* find_file(std::string_view path);
// The Content-Type of a file by its extension.
std::string_view content_type(std::string_view path);

}  // namespace sluice::broker::console
