// Errors of the storage engine. Expected failures (disk full, offset out of range, corrupt
// bytes) are values; bugs are assertions. broker/ maps LogErrc to Kafka error codes.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"

namespace sluice::log {

enum class LogErrc : uint8_t {
  kIo,                // a read, write or fsync failed; for writes the partition stops
  kNoSpace,           // ENOSPC/EDQUOT
  kCorrupt,           // bytes on disk fail their checks; never served
  kOffsetOutOfRange,  // below the log start or above the log end
  kInvalidBatch,      // an append's bytes are not valid record batches v2
  kBusy,              // too many appends in flight, or an operation that needs none in flight
  kInvalidArgument,   // a bad configuration or argument
};

struct LogError {
  LogErrc code = LogErrc::kIo;
  std::string message;
};

const char* to_string(LogErrc code);

inline Unexpected<LogError> log_error(LogErrc code, std::string message) {
  return Unexpected<LogError>(LogError{code, std::move(message)});
}

// An errno from a failed system call, as an error: ENOSPC and EDQUOT are kNoSpace.
Unexpected<LogError> errno_error(int err, const std::string& what);

template <class T>
using LogResult = Result<T, LogError>;

}  // namespace sluice::log
