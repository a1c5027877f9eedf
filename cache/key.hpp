// The cache key: (account, canonical image id) held as one contiguous byte string, so a key
// costs one allocation and one hash pass.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>

namespace imagegate::cache {

class key;

/// A non-owning view of a key: the account and the canonical image id, each a view of bytes
/// held elsewhere (the copy stored inside a cache entry, or the request target itself on the
/// hit path, so a lookup allocates nothing). Valid while the bytes it points to are.
class key_view {
public:
    key_view() = default;
    key_view(std::string_view account, std::string_view image_id) noexcept
        : account_(account), image_id_(image_id) {}

    std::string_view account() const noexcept { return account_; }
    std::string_view image_id() const noexcept { return image_id_; }

    friend bool operator==(key_view a, key_view b) noexcept {
        return a.account_ == b.account_ && a.image_id_ == b.image_id_;
    }

private:
    std::string_view account_;
    std::string_view image_id_;
};

/// Identifies one cached image record. The image id must already be canonical (the router
/// decodes and normalises it); the cache compares both parts as opaque bytes.
///
/// Layout: `account + '\0' + image_id` in one string. Account ids are 32 hex characters and
/// generated image ids 36, both past the 15-byte small-string buffer, so two strings would
/// cost two heap blocks per key copy; one string costs one. The split offset is stored, so
/// keys stay distinct even if a part contained a NUL byte.
///
/// Value type: distinct objects are safe to use from different threads; a shared object is
/// safe for concurrent const use only.
class key {
public:
    key() = default;
    key(std::string_view account, std::string_view image_id);
    explicit key(key_view v) : key(v.account(), v.image_id()) {}

    std::string_view account() const noexcept { return {bytes_.data(), split_}; }
    std::string_view image_id() const noexcept {
        return std::string_view(bytes_).substr(split_ + 1);
    }
    /// The separator-joined bytes, as a cache entry stores them.
    std::string_view joined() const noexcept { return bytes_; }
    /// Bytes held on the heap by this key (0 while they fit the small-string buffer).
    std::size_t heap_bytes() const noexcept;

    key_view view() const noexcept { return {account(), image_id()}; }
    operator key_view() const noexcept { return view(); }  // NOLINT: a key is its view

    friend bool operator==(const key& a, const key& b) noexcept {
        return a.split_ == b.split_ && a.bytes_ == b.bytes_;
    }

private:
    std::string bytes_{'\0'};  // account, '\0', image_id
    std::size_t split_ = 0;    // length of the account part
};

/// Prints `account/"image_id"`, with control and non-ASCII bytes escaped as \xNN so a log line
/// cannot be forged through an id.
std::ostream& operator<<(std::ostream& os, key_view k);
std::ostream& operator<<(std::ostream& os, const key& k);

/// Hash of the two parts, each hashed on its own and then mixed, so ("ab","c") and ("a","bc")
/// hash different inputs and a view whose parts are not adjacent in memory (the request
/// target's account and id segments) hashes like the stored key. Transparent: a key and a
/// key_view of the same parts hash equal.
struct key_hash {
    using is_transparent = void;

    std::size_t operator()(key_view k) const noexcept {
        const std::size_t a = std::hash<std::string_view>{}(k.account());
        const std::size_t h = std::hash<std::string_view>{}(k.image_id());
        // boost::hash_combine's mixing step.
        return h ^ (a + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2));
    }
    std::size_t operator()(const key& k) const noexcept { return (*this)(k.view()); }
};

}  // namespace imagegate::cache

template <>
struct std::hash<imagegate::cache::key> : imagegate::cache::key_hash {};
