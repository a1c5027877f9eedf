// The Asio/Beast vocabulary every networking file uses: namespace aliases and the two
// completion tokens (Boost 1.81 has no default token; see STYLE: "Tokens are explicit").
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace imagegate {

namespace asio = boost::asio;

/// Throwing token: only where a failure must end the whole task anyway.
inline constexpr auto use_awaitable = asio::use_awaitable;
/// Non-throwing token: `auto [ec, n] = co_await op(..., use_nothrow);` for expected outcomes.
inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

}  // namespace imagegate
