// The broker's log line format. Client strings (client ids, group and member ids, topic names
// that failed validation, decoder messages quoting them) reach log lines; a control character
// in one could forge a line or hide one. Every line's message is escaped where it is written,
// so no call site has to remember to.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sluice::broker {

// `text` with control characters (below 0x20, and 0x7f) and backslashes written as \xNN and
// \\ ; everything else, UTF-8 included, is kept.
std::string escape_for_log(std::string_view text);

// Installs the format ("2026-01-02 03:04:05.678 info message") on spdlog's default logger,
// with the message escaped by escape_for_log(). With `json`, every line is one JSON object
// instead: {"ts":"2026-01-02T03:04:05.678Z","level":"info","thread":123,"msg":"..."}, the
// message escaped by json_log_string().
void install_log_format(bool json = false);

// `text` as a JSON string (quotes included): control characters escaped, valid UTF-8 kept,
// and each byte of invalid UTF-8 written as the code point of the same value (\u00XX), so a
// line is always valid JSON whatever bytes a client sent.
std::string json_log_string(std::string_view text);

// Length of the valid UTF-8 sequence at the start of `s` (1 to 4; 1 for ASCII), or 0 when
// it is not one (a stray or cut byte, an overlong form, a surrogate, past U+10FFFF). `s` must
// not be empty.
size_t utf8_sequence(std::string_view s);

}  // namespace sluice::broker
