#include "gateway/image/writes.hpp"

#include "cache/sharded_cache.hpp"
#include "gateway/fleet/l2_cache.hpp"
#include "gateway/http/envelope.hpp"
#include "gateway/image/impl.hpp"
#include "gateway/image/route.hpp"
#include "gateway/metrics/registry.hpp"
#include "gateway/validate/image_record.hpp"

#include <fmt/ostream.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ostream>
#include <utility>

namespace imagegate::gateway {

namespace http = boost::beast::http;

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

/// The account of an upload target `[/client/v4]/accounts/{a}/images/v1[?query]`, or empty.
std::string_view upload_account(std::string_view target) {
    std::string_view path = request_path(target);
    constexpr std::string_view base = "/client/v4";
    constexpr std::string_view accounts = "/accounts/";
    constexpr std::string_view images = "/images/v1";
    if (path.starts_with(base) && path.substr(base.size()).starts_with(accounts)) {
        path.remove_prefix(base.size());
    }
    if (!path.starts_with(accounts)) {
        return {};
    }
    path.remove_prefix(accounts.size());
    const auto slash = path.find('/');
    const auto account = path.substr(0, slash);
    if (slash == std::string_view::npos || !is_account_id(account) ||
        path.substr(slash) != images) {
        return {};
    }
    return account;
}

/// One parser per thread, reused (the read path keeps its own).
simdjson::ondemand::parser& writes_parser() {
    thread_local simdjson::ondemand::parser parser;
    return parser;
}

/// result.id of an upload's answer, when it is a servable id; else nothing. The whole record
/// is validated afterwards against this id.
std::optional<std::string> uploaded_id(std::string_view body) {
    const simdjson::padded_string json(body);
    simdjson::ondemand::document doc;
    std::string_view id;
    if (writes_parser().iterate(json).get(doc) != simdjson::SUCCESS ||
        doc["result"]["id"].get_string().get(id) != simdjson::SUCCESS ||
        !is_servable_image_id(id)) {
        return std::nullopt;
    }
    return std::string(id);
}

/// The entry a validated record is stored as: the windows of the read path (a draft is
/// fresh for draft_ttl at most and never answered stale).
std::shared_ptr<const cache::entry> record_entry(const cache::key& k, std::string_view body,
                                                 bool draft, clock::time_point received,
                                                 const image_policy& fresh) {
    const auto ttl = draft ? std::min(fresh.draft_ttl, fresh.ttl) : fresh.ttl;
    return cache::make_entry(
        {.key = k,
         .status = 200,
         .kind = draft ? cache::entry_kind::draft : cache::entry_kind::positive,
         .body = body,
         .stored_at = received,
         .ttl = ttl,
         .swr = draft ? clock::duration::zero() : clock::duration(fresh.stale_while_revalidate),
         .sie = draft ? clock::duration::zero() : clock::duration(fresh.stale_if_error)});
}

/// What the L1 step decided, for the fleet step.
struct l1_change {
    write_effect effect = write_effect::unchanged;
    cache::key key;
    std::shared_ptr<const cache::entry> stored;  // what L2 should hold now, if anything
};

}  // namespace

std::ostream& operator<<(std::ostream& os, write_target::kind k) {
    switch (k) {
    case write_target::kind::edit: return os << "edit";
    case write_target::kind::remove: return os << "remove";
    case write_target::kind::upload: return os << "upload";
    }
    return os << "kind(?)";
}

std::ostream& operator<<(std::ostream& os, write_effect e) {
    switch (e) {
    case write_effect::unchanged: return os << "unchanged";
    case write_effect::stored: return os << "stored";
    case write_effect::negative: return os << "negative";
    case write_effect::dropped: return os << "dropped";
    }
    return os << "write_effect(?)";
}

std::optional<write_target> classify_write(http::verb method, std::string_view path) {
    if (method == http::verb::post) {
        const auto account = upload_account(path);
        if (account.empty()) {
            return std::nullopt;
        }
        return write_target{write_target::kind::upload, std::string(account), {}, {}};
    }
    if (method != http::verb::patch && method != http::verb::delete_) {
        return std::nullopt;
    }
    route_result r = route_image(path);
    if (!r.ok()) {
        return std::nullopt;
    }
    return write_target{
        method == http::verb::patch ? write_target::kind::edit : write_target::kind::remove,
        std::move(r.image.account), std::move(r.image.image_id), std::move(r.image.canonical_id)};
}

write_effects::write_effects(image_handler& images) : images_(images.impl_) {}

write_ticket write_effects::begin(const write_target& t) {
    stats_.began.fetch_add(1, relaxed);
    write_ticket out{t, 0};
    if (t.k != write_target::kind::upload) {
        out.generation = images_->cache.fence(t.key());
    }
    return out;
}

namespace {

/// Stores `e` in place of the write's key in one step with a generation change (no fill that
/// started earlier stores after it). `generation`: the key's generation after begin(); a
/// purge or another write since then, or an entry too large, drops the key instead.
write_effect replace(cache::sharded_cache& store, const std::shared_ptr<const cache::entry>& e,
                     std::uint64_t generation, write_effect done) {
    if (store.replace_if_current(e, generation)) {
        return done;
    }
    store.erase(e->key());
    return write_effect::dropped;
}

/// Validates `body` as the record of image `id` exactly like a detail answer and stores it
/// under out.key (see replace()); an invalid record drops the key.
void store_record(image_handler::impl& s, l1_change& out, std::string_view body,
                  std::string_view id, std::uint64_t generation, write_stats& stats,
                  clock::time_point now) {
    const auto v = validate::validate_image(body, body.size(), id, writes_parser());
    if (!v.ok()) {
        stats.invalid.fetch_add(1, relaxed);
        s.cache.erase(out.key);
        out.effect = write_effect::dropped;
        return;
    }
    out.stored = record_entry(out.key, body, v.draft, now, *s.freshness.load());
    out.effect = replace(s.cache, out.stored, generation, write_effect::stored);
}

/// The L1 step of finish(): decides and applies the change. Reads `o.body`.
l1_change apply_l1(image_handler::impl& s, const write_ticket& t, const write_outcome& o,
                   write_stats& stats, clock::time_point now) {
    const write_target& w = t.target;
    l1_change out;
    // 3xx and 4xx: the upstream refused or redirected; the write did not happen.
    if (o.status >= 300 && o.status < 500) {
        return out;
    }
    const bool applied = o.status >= 200 && o.status < 300 && o.facts.clean();
    if (w.k == write_target::kind::upload) {
        // The id is in the request's multipart body, which the gateway does not read: only a
        // clean answer names it. Without one nothing is known to drop (a negative entry of a
        // custom id expires after cache.negative_ttl).
        const auto id = applied ? uploaded_id(o.body) : std::nullopt;
        if (!id) {
            stats.invalid.fetch_add(applied ? 1 : 0, relaxed);
            return out;
        }
        out.key = cache::key(w.account, percent_encode(*id));
        store_record(s, out, o.body, *id, s.cache.generation(out.key), stats, now);
    } else {
        out.key = w.key();
        if (!applied) {
            // No answer, 5xx, or an answer that is not certainly whole: the write may have
            // happened. The next read asks the upstream.
            s.cache.erase(out.key);
            out.effect = write_effect::dropped;
            return out;
        }
        if (w.k == write_target::kind::edit) {
            store_record(s, out, o.body, w.image_id, t.generation, stats, now);
        } else {
            // What the upstream answers a read of a deleted image.
            out.stored = cache::make_entry({.key = out.key,
                                            .status = 404,
                                            .kind = cache::entry_kind::negative,
                                            .body = error_envelope(5404, "Image not found"),
                                            .stored_at = now,
                                            .ttl = s.freshness.load()->negative_ttl});
            out.effect = replace(s.cache, out.stored, t.generation, write_effect::negative);
        }
    }
    if (out.effect == write_effect::dropped) {
        out.stored = nullptr;
    }
    return out;
}

/// Passthrough: what the answer says about the caller's credential, as for reads.
void update_proofs(proof_cache& proofs, const write_target& w, const write_outcome& o,
                   clock::time_point now) {
    if (!o.cred) {
        return;
    }
    if (o.status >= 200 && o.status < 300 && o.facts.certain()) {
        proofs.prove(*o.cred, w.account, now);
    } else if (o.status == 401) {
        proofs.revoke_all(*o.cred);
    } else if (o.status == 403) {
        proofs.revoke(*o.cred, w.account);
    }
}

}  // namespace

asio::awaitable<write_effect> write_effects::finish(write_ticket t, write_outcome o) {
    image_handler::impl& s = *images_;
    const auto now = s.policy.time->now();
    update_proofs(s.proofs, t.target, o, now);
    l1_change change = apply_l1(s, t, o, stats_, now);
    switch (change.effect) {
    case write_effect::unchanged: stats_.unchanged.fetch_add(1, relaxed); break;
    case write_effect::stored: stats_.stored.fetch_add(1, relaxed); break;
    case write_effect::negative: stats_.negative.fetch_add(1, relaxed); break;
    case write_effect::dropped: stats_.dropped.fetch_add(1, relaxed); break;
    }
    // `o.body` is not read past this point. The fleet: the key leaves L2 and every other
    // instance's L1 (the purge event), then L2 gets what L1 holds now.
    if (s.l2 && change.effect != write_effect::unchanged && !change.key.image_id().empty()) {
        const bool broadcast = co_await s.l2->purge(std::string(change.key.account()),
                                                    std::string(change.key.image_id()));
        if (!broadcast) {
            s.log->warn(
                "write to {} not broadcast to the fleet: Redis unreachable or slow; other "
                "instances keep their entry until it expires",
                fmt::streamed(change.key));
        }
        if (change.stored) {
            s.l2->after_fetch(change.key, change.stored);
        }
    }
    co_return change.effect;
}

void write_effects::render_metrics(std::string& out) const {
    constexpr std::string_view name = "imagegate_image_writes_total";
    metrics::append_header(out, name, "counter",
                           "Forwarded image writes (PATCH, DELETE, upload) by what they did to "
                           "the cache.");
    const std::pair<std::string_view, const std::atomic<std::uint64_t>*> rows[] = {
        {"effect=\"unchanged\"", &stats_.unchanged},
        {"effect=\"stored\"", &stats_.stored},
        {"effect=\"negative\"", &stats_.negative},
        {"effect=\"dropped\"", &stats_.dropped},
    };
    for (const auto& [labels, value] : rows) {
        metrics::append_sample(out, name, "", "", value->load(relaxed), labels);
    }
    metrics::append_sample(out, "imagegate_image_writes_invalid_total", "counter",
                           "2xx answers to image writes whose body failed validation (never "
                           "stored).",
                           stats_.invalid.load(relaxed));
}

}  // namespace imagegate::gateway
