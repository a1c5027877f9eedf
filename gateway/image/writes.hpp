// What a forwarded write means to the cache: which requests write an image (classify_write),
// and keeping L1, L2 and the other instances right around one (write_effects).
#pragma once

#include "cache/key.hpp"
#include "gateway/core/digest_lru.hpp"
#include "gateway/core/net.hpp"
#include "gateway/image/handler.hpp"
#include "gateway/upstream/connection.hpp"

#include <boost/beast/http/verb.hpp>

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace imagegate::gateway {

/// An image write recognised from a forwarded request's method and path.
struct write_target {
    enum class kind {
        edit,    ///< PATCH .../accounts/{a}/images/v1/{id}
        remove,  ///< DELETE .../accounts/{a}/images/v1/{id}
        upload,  ///< POST .../accounts/{a}/images/v1 (the id is learnt from the answer)
    };
    kind k = kind::edit;
    std::string account;
    /// edit and remove: the decoded id (compared with result.id) and its canonical form,
    /// which keys the cache exactly as the read path keys it (`folder%2Fsub%2Fx` and
    /// `folder/sub/x` are one key). Empty for an upload.
    std::string image_id;
    std::string canonical_id;

    /// The cache key of an edit or remove.
    cache::key key() const { return {account, canonical_id}; }

    friend bool operator==(const write_target&, const write_target&) = default;
};

std::ostream& operator<<(std::ostream& os, write_target::kind k);

/// PATCH or DELETE of `.../accounts/{a}/images/v1/{id}` (either id spelling; the reserved
/// routes `keys`, `stats`, `variants[/…]` and `{id}/blob` are not ids) and POST of
/// `.../accounts/{a}/images/v1`; nothing else. `path` is the request target, with or without
/// `/client/v4` and the query (ignored), as route_image takes it.
std::optional<write_target> classify_write(boost::beast::http::verb method, std::string_view path);

/// What finish() needs from begin().
struct write_ticket {
    write_target target;
    /// edit and remove: the key's cache generation right after begin() changed it.
    std::uint64_t generation = 0;
};

/// The upstream's answer to a write, as the forward handler saw it.
struct write_outcome {
    /// 0: no complete answer (timeout, reset, a body over the caller's limit).
    unsigned status = 0;
    /// The whole body; valid until finish() completes (co_await it at once).
    std::string_view body;
    /// How certainly the answer is this request's (upstream/connection.hpp): only a clean
    /// answer is stored; only a certain one proves a passthrough credential.
    upstream::exchange_facts facts;
    /// Passthrough: the digest of the caller's credential (auth::read_caller_credential);
    /// empty in token mode.
    std::optional<credential_digest> cred;
};

/// What finish() did to the key (access log, metrics, tests).
enum class write_effect {
    unchanged,  ///< the write failed upstream (4xx) or was not an image write: nothing changed
    stored,     ///< the validated record the upstream returned replaced the entry
    negative,   ///< deleted: the entry is the upstream's "image not found" (5404) answer
    dropped,    ///< the entry was dropped: the outcome is uncertain (no answer, 5xx, unclean
                ///< or invalid body) or another write or purge came between begin and finish
};

std::ostream& operator<<(std::ostream& os, write_effect e);

/// Counters of write_effects (relaxed atomics).
struct write_stats {
    std::atomic<std::uint64_t> began{0};
    std::atomic<std::uint64_t> unchanged{0};
    std::atomic<std::uint64_t> stored{0};
    std::atomic<std::uint64_t> negative{0};
    std::atomic<std::uint64_t> dropped{0};
    /// 2xx answers whose body failed validation (the entry is dropped, never stored).
    std::atomic<std::uint64_t> invalid{0};
};

/// Keeps the cache right around forwarded image writes. Shares the image handler's cache,
/// freshness windows (reloads included), passthrough proofs and fleet tier (attach_fleet
/// before the first request). Owned by the composition root next to the image handler,
/// which it must not outlive; used by the forward handler. Thread-safe.
///
/// Generations: begin() changes the key's generation without dropping its entry, so a read's
/// fill that started earlier stores nothing from then on (its clients still get its answer);
/// finish() stores the write's result only if nothing (a purge, another write) changed the
/// generation since begin(), and changes it again in the same step, so a fill that started
/// while the write was in flight (it may carry the old record) cannot store after finish().
class write_effects {
public:
    explicit write_effects(image_handler& images);
    write_effects(const write_effects&) = delete;
    write_effects& operator=(const write_effects&) = delete;

    /// Right before the upstream call of the write. The ticket holds nothing to release: a
    /// write refused before its upstream call (admission, a client gone) needs no finish().
    write_ticket begin(const write_target& t);

    /// After the upstream answered (or failed to), on an I/O worker: a 2xx PATCH stores the
    /// returned record, validated exactly like a detail answer; a 2xx DELETE stores the
    /// upstream's "not found" (404, 5404) answer; a 2xx upload stores the returned record
    /// under result.id (dropping a negative entry); 4xx changes nothing; no answer, 5xx, an
    /// unclean answer or a 2xx body that fails validation drops the entry (the write may have
    /// happened). With the fleet tier every change is also deleted from L2 and broadcast (the
    /// other instances drop their L1 entry), then a stored entry is written to L2. Passthrough
    /// (`o.cred`): a certain 2xx proves the credential for the account, 401/403 revoke as
    /// for reads. Never throws for Redis trouble (the fleet degrades to L1 only).
    asio::awaitable<write_effect> finish(write_ticket t, write_outcome o);

    const write_stats& stats() const noexcept { return stats_; }
    /// Appends imagegate_image_writes_total{effect=...} in Prometheus text.
    void render_metrics(std::string& out) const;

private:
    std::shared_ptr<image_handler::impl> images_;
    write_stats stats_;
};

}  // namespace imagegate::gateway
