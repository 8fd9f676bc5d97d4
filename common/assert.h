// Assertions that stay on in every build (SLUICE_ASSERT) and costly checks for debug,
// sanitizer and simulation builds (SLUICE_DASSERT). A failed assertion is a bug: it prints
// the condition, file and line, and aborts.
#pragma once

namespace sluice::detail {
[[noreturn]] void assert_fail(const char* condition, const char* file, int line) noexcept;
}  // namespace sluice::detail

#define SLUICE_ASSERT(cond)                                     \
  do {                                                          \
    if (!(cond)) [[unlikely]]                                   \
      ::sluice::detail::assert_fail(#cond, __FILE__, __LINE__); \
  } while (0)

#if !defined(NDEBUG) || defined(SLUICE_SANITIZED) || defined(SLUICE_SIMULATION)
#define SLUICE_DASSERT(cond) SLUICE_ASSERT(cond)
#else
#define SLUICE_DASSERT(cond) \
  do {                       \
  } while (0)
#endif

#define SLUICE_UNREACHABLE() ::sluice::detail::assert_fail("unreachable", __FILE__, __LINE__)
