// The one place that maps the storage engine's errors to Kafka error codes.
#pragma once

#include "log/errc.h"
#include "protocol/error_codes.h"

namespace sluice::broker {

inline kafka::ErrorCode to_kafka(log::LogErrc errc) {
  switch (errc) {
    case log::LogErrc::kOffsetOutOfRange:
      return kafka::ErrorCode::kOffsetOutOfRange;
    case log::LogErrc::kCorrupt:
      return kafka::ErrorCode::kCorruptMessage;
    case log::LogErrc::kInvalidBatch:
      return kafka::ErrorCode::kCorruptMessage;
    // Too many appends in flight: retriable, the client backs off and resends.
    case log::LogErrc::kBusy:
      return kafka::ErrorCode::kRequestTimedOut;
    case log::LogErrc::kInvalidArgument:
      return kafka::ErrorCode::kInvalidRequest;
    case log::LogErrc::kIo:
    case log::LogErrc::kNoSpace:
      return kafka::ErrorCode::kKafkaStorageError;
  }
  return kafka::ErrorCode::kUnknownServerError;
}

inline int16_t code(kafka::ErrorCode e) { return static_cast<int16_t>(e); }

}  // namespace sluice::broker
