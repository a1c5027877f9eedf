// The admin routes of warming: POST, GET and DELETE /cache/warm. Parameters come in the query
// string (the admin listener reads no request bodies); every method needs the admin token.
#pragma once

#include "gateway/http/server.hpp"

#include <optional>
#include <functional>
#include <string>
#include <string_view>

namespace imagegate::warm {

class warmer;

/// What one query string asks for, checked (pure; table-tested).
struct warm_query {
    std::string account;  ///< `account`: 32 lowercase hex
    /// `per_page`: 10..10000; nothing: a resumed job's own, or 1000 for a new one.
    std::optional<std::size_t> per_page;
    std::string resume_from;  ///< `resume_from`: a continuation token; empty: none
    bool restart = false;     ///< `restart=1`: forget the remembered position
    std::string error;        ///< why the query is refused; empty when usable
};

/// Parses `account`, `per_page`, `resume_from`, `restart` from `query` (the part after
/// `?`). Unknown parameters, a parameter twice, or a bad value are refused with a reason.
warm_query parse_warm_query(std::string_view query, bool need_account);

/// Owned by the composition root next to the warmer it drives. Thread-safe.
class warm_api {
public:
    /// The admin check every /cache/warm request passes: nothing when `req` carries the
    /// admin token, else the 401/403 to answer (the admin listener's own check, so a reload
    /// that replaces the token applies here too).
    using authorize_fn = std::function<std::optional<gateway::reply>(const gateway::request&)>;

    /// `disabled_reason`: non-empty when warming cannot run (passthrough mode has no token
    /// of its own to warm with): POST is refused with it.
    warm_api(warmer& w, authorize_fn authorize, std::string disabled_reason = {})
        : warmer_(w),
          authorize_(std::move(authorize)),
          disabled_reason_(std::move(disabled_reason)) {}

    /// Whether `req` is for /cache/warm (then handle() answers it).
    static bool owns(const gateway::request& req);
    /// Answers a /cache/warm request; a started job runs on this session's worker.
    asio::awaitable<gateway::reply> handle(gateway::request req);

private:
    warmer& warmer_;
    authorize_fn authorize_;
    std::string disabled_reason_;
};

}  // namespace imagegate::warm
