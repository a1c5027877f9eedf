// A map from credential digests (SHA-256) to per-credential state, ordered by last use so the
// least recently used entry is the one a bound or an idle sweep removes first.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <list>
#include <unordered_map>
#include <utility>

namespace imagegate {

/// SHA-256 of a caller's credential: how per-credential state is keyed, never the credential.
using credential_digest = std::array<unsigned char, 32>;

/// Hash of a digest: its first bytes (a SHA-256 is already uniformly spread).
struct digest_hash {
    std::size_t operator()(const credential_digest& d) const noexcept {
        std::size_t h = 0;
        std::memcpy(&h, d.data(), sizeof h);
        return h;
    }
};

/// Least-recently-used order over digests. Owned by one component, which guards it with its
/// own mutex: not thread-safe.
template <class Value>
class digest_lru {
public:
    using time_point = std::chrono::steady_clock::time_point;

    struct node {
        credential_digest digest;
        time_point last_used;
        Value value;
    };

    /// The node of `d`, or null; does not change the order.
    node* find(const credential_digest& d) {
        const auto it = index_.find(d);
        return it == index_.end() ? nullptr : &*it->second;
    }
    const node* find(const credential_digest& d) const {
        const auto it = index_.find(d);
        return it == index_.end() ? nullptr : &*it->second;
    }

    /// The node of `d` marked used at `now` (moved to the newest end), created with `make()`
    /// when absent.
    template <class Make>
    node& touch(const credential_digest& d, time_point now, Make&& make) {
        if (const auto it = index_.find(d); it != index_.end()) {
            order_.splice(order_.end(), order_, it->second);
            it->second->last_used = now;
            return *it->second;
        }
        order_.push_back(node{d, now, make()});
        index_.emplace(d, std::prev(order_.end()));
        return order_.back();
    }

    void erase(const credential_digest& d) {
        if (const auto it = index_.find(d); it != index_.end()) {
            order_.erase(it->second);
            index_.erase(it);
        }
    }

    /// The least recently used node, or null when empty.
    node* oldest() { return order_.empty() ? nullptr : &order_.front(); }
    void pop_oldest() { erase(order_.front().digest); }

    std::size_t size() const noexcept { return index_.size(); }

    template <class F>
    void for_each(F&& f) const {
        for (const auto& n : order_) {
            f(n);
        }
    }

private:
    std::list<node> order_;  // oldest first
    std::unordered_map<credential_digest, typename std::list<node>::iterator, digest_hash> index_;
};

}  // namespace imagegate
