// Randomness for ids and seeds, not secrets (broker/sasl.h draws those from OpenSSL): one
// engine per thread, seeded once from std::random_device and the clock; a device per draw was
// 3% of the controller's time creating thousands of topics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sluice {

uint64_t random_u64();
// `n` random bytes (a topic id, a request id).
std::string random_id(size_t n);

}  // namespace sluice
