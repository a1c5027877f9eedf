#include "gateway/fleet/budget_script.hpp"

#include <algorithm>
#include <ostream>

namespace imagegate::fleet {

namespace {

// Shared by the scripts: Redis TIME in µs, integers written with %d (Lua 5.1 would print a
// 16-digit number as 1.7e+15 and lose digits), and TTLs that only grow (PEXPIRE GT needs 7.0).
constexpr std::string_view prelude = R"lua(
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function int(x) return string.format('%d', x) end
local function keep_until(k, until_us)
  local ms = math.ceil((until_us - now) / 1000) + 1
  if ms > 0 and redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
end
local function set_tat(tat, interval, ikey)
  local ms = math.ceil((tat - now) / 1000)
  if ms > 0 then
    redis.call('SET', KEYS[1], int(tat), 'PX', ms)
    redis.call('SET', ikey, int(interval), 'PX', ms)
  else
    redis.call('DEL', KEYS[1], ikey)
  end
end
)lua";

// KEYS: 1 budget (tat), 2 holds (zset key -> slot), 3 vacant (zset), 4 block,
//       5 interval (the interval tat was written with).
// ARGV: 1 interval_us, 2 burst, 3 reserve, 4 background, 5 max_wait_us, 6 hold key,
//       7 hold_horizon_us, 8 hold_grace_us, 9 max_holds, 10 debt.
// Reply: {outcome, wait_us, slot_us, tat_us} (budget_script.hpp, enum outcome).
constexpr std::string_view reserve_body = R"lua(
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local background = ARGV[4] == '1'
local max_wait = tonumber(ARGV[5])
local key = ARGV[6]
local grace = tonumber(ARGV[8])
local block = redis.call('PTTL', KEYS[4])
if block == -1 then
  redis.call('PEXPIRE', KEYS[4], 300000)
  block = 300000
end
if block > 3600000 then block = 3600000 end
if block > 0 then return {6, block * 1000, 0, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. int(now - grace))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. int(now))
if not background and key ~= '' then
  local held = redis.call('ZSCORE', KEYS[2], key)
  if held then
    local slot = tonumber(held)
    if slot - now > max_wait then return {5, slot - now, slot, 0} end
    redis.call('ZREM', KEYS[2], key)
    return {2, math.max(slot - now, 0), slot, 0}
  end
end
local raw = redis.call('GET', KEYS[1])
local tat = 0
if raw then
  local t = tonumber(raw)
  tat = t or (now + burst * interval)
  local was = tonumber(redis.call('GET', KEYS[5]) or '')
  if t and was and was > 0 and was ~= interval and tat > now then
    tat = now + math.ceil((tat - now) / was) * interval
    set_tat(tat, interval, KEYS[5])
  end
end
local debt = tonumber(ARGV[10])
if debt > 0 then
  tat = math.max(tat, now) + debt * interval
  set_tat(tat, interval, KEYS[5])
end
local tol = (burst - 1) * interval
if background then tol = (burst - 1 - tonumber(ARGV[3])) * interval end
local ahead = math.max(tat, now) - now
if ahead <= tol then
  tat = math.max(tat, now) + interval
  set_tat(tat, interval, KEYS[5])
  return {0, 0, now, tat}
end
local wait = ahead - tol
if background then return {7, wait, 0, 0} end
local v = redis.call('ZRANGEBYSCORE', KEYS[3], int(now), int(now + max_wait), 'LIMIT', 0, 1)
if v[1] then
  redis.call('ZREM', KEYS[3], v[1])
  local slot = tonumber(v[1])
  return {1, slot - now, slot, 0}
end
local slot = now + wait
if wait <= max_wait then
  tat = tat + interval
  set_tat(tat, interval, KEYS[5])
  return {1, wait, slot, tat}
end
if key == '' or wait > tonumber(ARGV[7]) or redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[9]) then
  return {3, wait, slot, 0}
end
tat = tat + interval
set_tat(tat, interval, KEYS[5])
redis.call('ZADD', KEYS[2], int(slot), key)
keep_until(KEYS[2], slot + grace)
return {4, wait, slot, 0}
)lua";

// KEYS: 1 budget, 2 vacant, 3 interval. ARGV: 1 interval_us, 2 burst, 3 immediate, 4 slot_us, 5
// tat_us.
constexpr std::string_view give_back_body = R"lua(
local interval = tonumber(ARGV[1])
local slot = tonumber(ARGV[4])
local raw = redis.call('GET', KEYS[1])
local tat = raw and tonumber(raw)
if not tat then return 0 end
local was = tonumber(redis.call('GET', KEYS[3]) or '')
if was and was ~= interval then return 0 end
if ARGV[3] == '1' then
  if tat ~= tonumber(ARGV[5]) then return 0 end
  set_tat(tat - interval, interval, KEYS[3])
  return 1
end
local tol = (tonumber(ARGV[2]) - 1) * interval
if tat == slot + tol + interval then
  tat = tat - interval
  while true do
    local last = redis.call('ZRANGE', KEYS[2], -1, -1)
    if not last[1] or tat ~= tonumber(last[1]) + tol + interval then break end
    redis.call('ZREM', KEYS[2], last[1])
    tat = tat - interval
  end
  set_tat(tat, interval, KEYS[3])
  return 1
end
if slot < now then return 0 end
redis.call('ZADD', KEYS[2], int(slot), int(slot))
keep_until(KEYS[2], slot)
return 2
)lua";

// KEYS: 1 block. ARGV: 1 pause ms. A 429 seen anywhere never shortens a longer pause.
// Reply: the pause left (ms), so the writer learns of a longer one set by another instance.
constexpr std::string_view block_body = R"lua(
local ms = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
  return ms
end
return left
)lua";

std::string join(std::string_view a, std::string_view b) {
    std::string s(a);
    s += b;
    return s;
}

bool in_range(std::int64_t v, std::int64_t lo, std::int64_t hi) noexcept {
    return v >= lo && v <= hi;
}

}  // namespace

const redis::script& reserve_script() {
    static const redis::script s(join(prelude, reserve_body));
    return s;
}

const redis::script& give_back_script() {
    static const redis::script s(join(prelude, give_back_body));
    return s;
}

const redis::script& block_script() {
    static const redis::script s{std::string(block_body)};
    return s;
}

quota_keys keys_for(std::string_view prefix, std::string_view quota) {
    std::string tag = "{";
    tag += quota;
    tag += '}';
    std::string budget = join(prefix, ":budget:") + tag;
    return {.budget = budget,
            .holds = budget + ":holds",
            .vacant = budget + ":vacant",
            .interval = budget + ":interval",
            .block = join(prefix, ":block:") + tag};
}

std::string hex(const unsigned char* bytes, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * n);
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(digits[bytes[i] >> 4]);
        out.push_back(digits[bytes[i] & 0xf]);
    }
    return out;
}

std::string hold_key(std::string_view cache_key) {
    if (cache_key.empty()) {
        return {};
    }
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (const char c : cache_key) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ULL;
    }
    unsigned char bytes[8];
    for (int i = 0; i < 8; ++i) {
        bytes[i] = static_cast<unsigned char>(h >> (56 - 8 * i));
    }
    return hex(bytes, sizeof bytes);
}

std::vector<std::string> reserve_args(const script_budget& b, const reserve_request& r) {
    return {std::to_string(b.interval_us),
            std::to_string(b.burst),
            std::to_string(b.reserve),
            r.background ? "1" : "0",
            std::to_string(r.background ? 0 : r.max_wait.count()),
            r.background ? std::string() : r.hold_key,
            std::to_string(b.hold_horizon_us),
            std::to_string(b.hold_grace_us),
            std::to_string(b.max_holds),
            std::to_string(r.debt)};
}

std::ostream& operator<<(std::ostream& os, outcome o) {
    switch (o) {
    case outcome::granted_now: return os << "granted_now";
    case outcome::granted_queued: return os << "granted_queued";
    case outcome::granted_held: return os << "granted_held";
    case outcome::refused: return os << "refused";
    case outcome::refused_hold: return os << "refused_hold";
    case outcome::refused_held: return os << "refused_held";
    case outcome::paused: return os << "paused";
    case outcome::reserve: return os << "reserve";
    }
    return os << "outcome(" << static_cast<int>(o) << ")";
}

std::ostream& operator<<(std::ostream& os, const reserve_reply& r) {
    return os << "{" << r.what << " wait=" << r.wait.count() << "us slot=" << r.slot_us
              << " tat=" << r.tat_us << "}";
}

std::string_view to_string(reply_error e) noexcept {
    switch (e) {
    case reply_error::error_reply: return "error_reply";
    case reply_error::wrong_shape: return "wrong_shape";
    case reply_error::bad_outcome: return "bad_outcome";
    case reply_error::out_of_range: return "out_of_range";
    case reply_error::inconsistent: return "inconsistent";
    }
    return "unknown";
}

std::ostream& operator<<(std::ostream& os, reply_error e) { return os << to_string(e); }

boost::system::result<reserve_reply, reply_error> decode_reserve(const redis::reply& reply,
                                                                 const reserve_request& r) {
    if (reply.is_error()) {
        return reply_error::error_reply;
    }
    if (reply.kind != redis::reply_kind::array || reply.elements.size() != 4) {
        return reply_error::wrong_shape;
    }
    for (const auto& e : reply.elements) {
        if (e.kind != redis::reply_kind::integer) {
            return reply_error::wrong_shape;
        }
    }
    const std::int64_t code = reply.elements[0].integer;
    const std::int64_t wait = reply.elements[1].integer;
    const std::int64_t slot = reply.elements[2].integer;
    const std::int64_t tat = reply.elements[3].integer;
    if (!in_range(code, 0, 7)) {
        return reply_error::bad_outcome;
    }
    if (!in_range(wait, 0, max_wait_bound.count()) || !in_range(slot, 0, max_time_us) ||
        !in_range(tat, 0, max_time_us)) {
        return reply_error::out_of_range;
    }
    const auto what = static_cast<outcome>(code);
    // A background call never queues, never claims or makes a hold; only it meets the reserve.
    const bool background_only = what == outcome::reserve;
    const bool foreground_only =
        what != outcome::granted_now && what != outcome::paused && what != outcome::reserve;
    if ((r.background && foreground_only) || (!r.background && background_only)) {
        return reply_error::bad_outcome;
    }
    const std::int64_t max_wait = r.background ? 0 : r.max_wait.count();
    bool ok = true;
    switch (what) {
    case outcome::granted_now: ok = wait == 0 && slot > 0 && tat > slot; break;
    case outcome::granted_queued: ok = wait <= max_wait && slot > 0; break;
    case outcome::granted_held: ok = wait <= max_wait && slot > 0 && !r.hold_key.empty(); break;
    case outcome::refused: ok = wait > max_wait; break;
    case outcome::refused_hold:
    case outcome::refused_held: ok = wait > max_wait && slot > 0 && !r.hold_key.empty(); break;
    case outcome::paused:
    case outcome::reserve: ok = wait > 0; break;
    }
    if (!ok) {
        return reply_error::inconsistent;
    }
    return reserve_reply{.what = what, .wait = micros(wait), .slot_us = slot, .tat_us = tat};
}

std::optional<std::chrono::milliseconds> decode_block(const redis::reply& reply,
                                                      std::chrono::milliseconds cap) noexcept {
    if (reply.kind != redis::reply_kind::integer || reply.integer < 0) {
        return std::nullopt;
    }
    // A longer pause (set by hand, or by an instance with another cap) is honoured up to ours.
    return std::chrono::milliseconds(std::min(reply.integer, cap.count()));
}

give_back_result decode_give_back(const redis::reply& reply) noexcept {
    if (reply.kind != redis::reply_kind::integer || !in_range(reply.integer, 0, 2)) {
        return give_back_result::failed;
    }
    return static_cast<give_back_result>(reply.integer);
}

}  // namespace imagegate::fleet
