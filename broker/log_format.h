// The broker's log line format. Client strings (client ids, group and member ids, topic names
// that failed validation, decoder messages quoting them) reach log lines; a control character
// in one could forge a line or hide one. Every line's message is escaped where it is written,
// so no call site has to remember to.
#pragma once

#include <string>
#include <string_view>

namespace sluice::broker {

// `text` with control characters (below 0x20, and 0x7f) and backslashes written as \xNN and
// \\ ; everything else, UTF-8 included, is kept.
std::string escape_for_log(std::string_view text);

// Installs the format ("2026-01-02 03:04:05.678 info message") on spdlog's default logger,
// with the message escaped by escape_for_log().
void install_log_format();

}  // namespace sluice::broker
