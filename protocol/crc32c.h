// CRC-32C (Castagnoli), the checksum of Kafka record batch v2: reflected polynomial
// 0x82F63B78, init and final xor 0xFFFFFFFF. crc32c("123456789") == 0xE3069283.
// Uses the SSE4.2 crc32 instruction when the CPU has it (checked once), else slice-by-8 tables.
#pragma once

#include <cstdint>

#include "common/bytes.h"

namespace sluice::kafka {

// CRC of `data`, continuing from `crc` (the result of an earlier call over the bytes before).
uint32_t crc32c(Bytes data, uint32_t crc = 0);

// Whether crc32c() runs on the CPU's instruction.
bool crc32c_hardware();

namespace detail {
// The simplest correct implementation: one table lookup per byte. Benchmarks' baseline.
uint32_t crc32c_bytewise(Bytes data, uint32_t crc = 0);
uint32_t crc32c_software(Bytes data, uint32_t crc = 0);  // slice-by-8
// The instruction over one stream (before three interleaved ones): the benchmark's reference.
uint32_t crc32c_one_stream(Bytes data, uint32_t crc = 0);
}  // namespace detail

}  // namespace sluice::kafka
