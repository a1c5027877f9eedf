// The head of a streamed reply; see session_stream.hpp.
#include "gateway/http/session_stream.hpp"

#include "gateway/http/reply.hpp"
#include "gateway/http/server_state.hpp"

namespace imagegate::gateway::detail {

std::string streamed_head(unsigned status, std::string_view header_lines,
                          std::optional<std::uint64_t> length, bool chunked, std::string_view id,
                          bool close) {
    head_buffer status_line;
    append_status_line(status_line, status);
    std::string out;
    out.reserve(status_line.size() + header_lines.size() + id.size() + 96);
    out += status_line.view();
    out += header_lines;
    if (length) {
        out += "Content-Length: ";
        out += std::to_string(*length);
        out += "\r\n";
    } else if (chunked) {
        out += "Transfer-Encoding: chunked\r\n";
    }
    out += request_id_header;
    out += id;
    out += close ? connection_close : connection_keep_alive;
    return out;
}

}  // namespace imagegate::gateway::detail
