// Invariant checks. KILN_CHECK aborts on a broken invariant (a bug, never bad input: bad
// input is a Status). KILN_DCHECK compiles away in NDEBUG builds.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace kiln::internal {
[[noreturn]] inline void CheckFailed(const char* file, int line, const char* expr) {
  std::fprintf(stderr, "%s:%d: KILN_CHECK failed: %s\n", file, line, expr);
  std::abort();
}
}  // namespace kiln::internal

#define KILN_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) ::kiln::internal::CheckFailed(__FILE__, __LINE__, #cond); \
  } while (false)

#ifdef NDEBUG
#define KILN_DCHECK(cond) \
  do {                    \
  } while (false && (cond))
#else
#define KILN_DCHECK(cond) KILN_CHECK(cond)
#endif
