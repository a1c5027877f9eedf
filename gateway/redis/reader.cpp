#include "gateway/redis/reader.hpp"

#include <hiredis/read.h>

#include <algorithm>
#include <new>

namespace imagegate::redis {

/// What the parser hooks see through redisReadTask::privdata.
struct reply_reader::state {
    reply_limits limits;
    /// Bytes charged to the reply being parsed (strings, element slots, the root itself).
    std::size_t bytes = 0;
    /// The cap that made a hook refuse; hiredis then reports "out of memory".
    std::optional<error> refused;
};

namespace {

using state = reply_reader::state;

state& state_of(const redisReadTask* t) { return *static_cast<state*>(t->privdata); }

redisReader* as_reader(void* r) { return static_cast<redisReader*>(r); }

void* refuse(state& st, error e) {
    st.refused = e;
    return nullptr;
}

/// Starts the accounting of a new reply at its root, then charges `n` more bytes (plus the
/// root object itself); false when that passes max_reply_bytes.
bool charge(const redisReadTask* t, std::size_t n) {
    state& st = state_of(t);
    if (t->parent == nullptr) {
        st.bytes = sizeof(reply);
    }
    if (n > st.limits.max_reply_bytes || st.bytes > st.limits.max_reply_bytes - n) {
        return false;
    }
    st.bytes += n;
    return true;
}

/// Where the value of task `t` goes: a new root (owned by hiredis until next() takes it, or
/// freed by free_object), or its slot in the parent array, sized when the parent was made.
reply* slot_for(const redisReadTask* t) {
    if (t->parent == nullptr) {
        return new (std::nothrow) reply;
    }
    auto* parent = static_cast<reply*>(t->parent->obj);
    const auto idx = static_cast<std::size_t>(t->idx);
    if (parent == nullptr || idx >= parent->elements.size()) {
        return nullptr;  // cannot happen with hiredis' task stack; refuse rather than trust it
    }
    return &parent->elements[idx];
}

// The hooks are called from C: no exception may leave them.

void* create_string(const redisReadTask* t, char* str, std::size_t len) {
    state& st = state_of(t);
    if (len > st.limits.max_bulk_bytes) {
        return refuse(st, error::bulk_too_large);
    }
    if (!charge(t, len)) {
        return refuse(st, error::reply_too_large);
    }
    try {
        reply* r = slot_for(t);
        if (r == nullptr) {
            return refuse(st, error::reply_too_large);
        }
        r->kind = t->type == REDIS_REPLY_ERROR    ? reply_kind::error
                  : t->type == REDIS_REPLY_STATUS ? reply_kind::status
                                                  : reply_kind::string;
        r->text.assign(str, len);
        return r;
    } catch (...) {
        return refuse(st, error::reply_too_large);
    }
}

void* create_array(const redisReadTask* t, int elements) {
    state& st = state_of(t);
    std::size_t depth = 1;
    for (const redisReadTask* p = t->parent; p != nullptr; p = p->parent) {
        ++depth;
    }
    if (depth > st.limits.max_depth) {
        return refuse(st, error::nesting_too_deep);
    }
    const auto n = static_cast<std::size_t>(std::max(elements, 0));
    if (n > st.limits.max_array_elements) {
        return refuse(st, error::array_too_large);
    }
    if (!charge(t, n * sizeof(reply))) {
        return refuse(st, error::reply_too_large);
    }
    try {
        reply* r = slot_for(t);
        if (r == nullptr) {
            return refuse(st, error::reply_too_large);
        }
        r->kind = reply_kind::array;
        r->elements.resize(n);  // slots first: children are written in place, by index
        return r;
    } catch (...) {
        return refuse(st, error::reply_too_large);
    }
}

/// The slot of an integer or nil (nothing to allocate but the root), or null after refusing.
reply* scalar_slot(const redisReadTask* t) {
    reply* r = charge(t, 0) ? slot_for(t) : nullptr;
    if (r == nullptr) {
        refuse(state_of(t), error::reply_too_large);
    }
    return r;
}

void* create_integer(const redisReadTask* t, long long value) {
    reply* r = scalar_slot(t);
    if (r != nullptr) {
        r->kind = reply_kind::integer;
        r->integer = value;
    }
    return r;
}

void* create_nil(const redisReadTask* t) {
    reply* r = scalar_slot(t);
    if (r != nullptr) {
        r->kind = reply_kind::nil;
    }
    return r;
}

// hiredis frees only roots (a partial reply on error, or an unclaimed one at the end);
// elements live inside their root.
void free_object(void* obj) { delete static_cast<reply*>(obj); }

// hiredis 0.14 takes the table by non-const pointer but never writes it.
const redisReplyObjectFunctions hooks = {create_string, create_array, create_integer, create_nil,
                                         free_object};

}  // namespace

reply_reader::reply_reader(const reply_limits& limits) : state_(std::make_unique<state>()) {
    state_->limits = limits;
    // hiredis' task stack has 9 levels: arrays nest at most 7 deep whatever we allow.
    state_->limits.max_depth = std::min<std::size_t>(limits.max_depth, 7);
    redisReader* r = redisReaderCreateWithFunctions(const_cast<redisReplyObjectFunctions*>(&hooks));
    if (r == nullptr) {
        throw std::bad_alloc();
    }
    r->privdata = state_.get();
    reader_ = r;
}

reply_reader::~reply_reader() { redisReaderFree(as_reader(reader_)); }

boost::system::error_code reply_reader::fail() {
    if (!failed_) {
        const error e = state_->refused.value_or(error::protocol_error);
        failed_ = make_error_code(e);
    }
    return failed_;
}

boost::system::result<void> reply_reader::feed(std::string_view bytes) {
    if (failed_) {
        return failed_;
    }
    if (redisReaderFeed(as_reader(reader_), bytes.data(), bytes.size()) != REDIS_OK) {
        return fail();
    }
    return {};
}

boost::system::result<std::optional<reply>> reply_reader::next() {
    if (failed_) {
        return failed_;
    }
    redisReader* r = as_reader(reader_);
    void* out = nullptr;
    if (redisReaderGetReply(r, &out) != REDIS_OK) {
        return fail();
    }
    if (out == nullptr) {
        // Incomplete: what is parsed so far plus what waits in the buffer must stay within
        // the cap, or a server announcing `$4000000000` (or a status line without CRLF)
        // would make us buffer forever.
        const std::size_t parsed = r->ridx >= 0 ? state_->bytes : 0;
        if (buffered() > state_->limits.max_reply_bytes ||
            parsed > state_->limits.max_reply_bytes - buffered()) {
            state_->refused = error::reply_too_large;
            return fail();
        }
        return std::optional<reply>();
    }
    const std::unique_ptr<reply> root(static_cast<reply*>(out));
    state_->bytes = 0;
    return std::optional<reply>(std::move(*root));
}

std::size_t reply_reader::buffered() const noexcept {
    const redisReader* r = as_reader(reader_);
    return r->len - r->pos;
}

std::string_view reply_reader::parser_message() const noexcept {
    return as_reader(reader_)->errstr;
}

}  // namespace imagegate::redis
