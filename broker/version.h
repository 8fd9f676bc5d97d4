#pragma once

namespace sluice::broker {
inline constexpr const char* kVersion = "0.1.0";
}  // namespace sluice::broker
