// Reading the small files the configuration names (TOML file, token file, CA bundle) with
// the checks every one of them needs: a regular file, a size cap, errors as text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace imagegate::config {

/// The outcome of read_regular_file().
struct file_read {
    /// The whole content; valid when `error` is empty.
    std::string text;
    /// Permission bits of the file (st_mode & 07777), after following symlinks.
    unsigned mode = 0;
    /// Why the file could not be read, naming the file; empty on success.
    std::string error;
};

/// Opens `path` (symlinks followed, as for Kubernetes secret volumes), requires a regular
/// file of at most `max_bytes` and reads it. Mode and size come from the opened descriptor,
/// so they describe the bytes that were read.
file_read read_regular_file(const std::string& path, std::uint64_t max_bytes);

/// read_regular_file() for a file holding a secret: additionally refused when group or
/// others may read or write it (mode & 077), with the fix in the error. The error never
/// contains the content.
file_read read_secret_file(const std::string& path, std::uint64_t max_bytes);

/// `text` without leading and trailing white space.
std::string_view trim(std::string_view text);

}  // namespace imagegate::config
