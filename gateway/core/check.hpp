// IMAGEGATE_CHECK: an invariant the code cannot continue without, checked in every build mode
// (Envoy's RELEASE_ASSERT): on failure it writes the condition and its reason to stderr and
// aborts. For program bugs only, never for anything that arrives from the network or a file.
#pragma once

namespace imagegate::detail {

/// Writes "imagegate: internal check failed: ..." to stderr and calls std::abort().
[[noreturn]] void check_failed(const char* condition, const char* message, const char* file,
                               int line) noexcept;

}  // namespace imagegate::detail

/// `cond` must hold; `msg` (a string literal) says which invariant it is.
#define IMAGEGATE_CHECK(cond, msg)                                               \
    do {                                                                         \
        if (!(cond)) [[unlikely]] {                                              \
            ::imagegate::detail::check_failed(#cond, (msg), __FILE__, __LINE__); \
        }                                                                        \
    } while (false)
