// Where the storage engine's log lines go. The default prints to stderr; the broker routes
// them to its own logger with set_log_sink(). Called from the shard threads; the sink must
// be safe to call from several threads.
#pragma once

#include <string_view>

namespace sluice::log {

enum class LogLevel : uint8_t { kInfo, kWarning, kError };
using LogSink = void (*)(LogLevel level, std::string_view message);

// Installs `sink` (nullptr restores the stderr default). Call before opening any log.
void set_log_sink(LogSink sink);

namespace detail {
void log_line(LogLevel level, std::string_view message);
}  // namespace detail

}  // namespace sluice::log
