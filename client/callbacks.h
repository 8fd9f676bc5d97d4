// Log and statistics callbacks of the Sluice client libraries (librdkafka's log_cb and
// stats_cb), set in ProducerConfig / ConsumerConfig. Installed as <client/callbacks.h>.
#pragma once

#include <functional>
#include <string>

namespace sluice {

// Syslog severities, as librdkafka uses them.
enum class LogLevel : int {
  kError = 3,
  kWarning = 4,
  kNotice = 5,  // the library recovers by itself (a connection lost and reopened, a retry)
  kInfo = 6,
  kDebug = 7,
};

// "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG".
const char* log_level_name(LogLevel level);

// One log line of the library (no trailing newline). Runs on the library's I/O thread or the
// thread inside a library call: keep it short, and do not call the producer's or consumer's
// blocking methods from it.
using LogCallback = std::function<void(LogLevel level, const std::string& message)>;

// A JSON document of the client's counters, every statistics_interval_ms (docs/clients.md
// lists the fields). Runs on the library's I/O thread: keep it short (copy the string and
// hand it to another thread to parse), and do not call the blocking methods from it.
using StatsCallback = std::function<void(const std::string& json)>;

}  // namespace sluice
