#include "log/logging.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "log/errc.h"

namespace sluice::log {

namespace {
void stderr_sink(LogLevel level, std::string_view message) {
  const char* tag = level == LogLevel::kError     ? "error"
                    : level == LogLevel::kWarning ? "warning"
                                                  : "info";
  std::fprintf(stderr, "sluice log %s: %.*s\n", tag, static_cast<int>(message.size()),
               message.data());
}
std::atomic<LogSink> g_sink{&stderr_sink};
}  // namespace

void set_log_sink(LogSink sink) { g_sink.store(sink ? sink : &stderr_sink); }

void detail::log_line(LogLevel level, std::string_view message) { g_sink.load()(level, message); }

const char* to_string(LogErrc code) {
  switch (code) {
    case LogErrc::kIo:
      return "io";
    case LogErrc::kNoSpace:
      return "no space";
    case LogErrc::kCorrupt:
      return "corrupt";
    case LogErrc::kOffsetOutOfRange:
      return "offset out of range";
    case LogErrc::kInvalidBatch:
      return "invalid batch";
    case LogErrc::kBusy:
      return "busy";
    case LogErrc::kInvalidArgument:
      return "invalid argument";
  }
  SLUICE_UNREACHABLE();
}

Unexpected<LogError> errno_error(int err, const std::string& what) {
  const LogErrc code = (err == ENOSPC || err == EDQUOT) ? LogErrc::kNoSpace : LogErrc::kIo;
  return log_error(code, what + ": " + std::strerror(err));
}

}  // namespace sluice::log
