// RESP, the Redis protocol (https://redis.io/docs/reference/protocol-spec/): the encoder of
// commands the Redis sink sends and the parser of the replies it reads. Neither allocates.
//
//   const std::string_view args[] = {"XADD", "s", "*", "body", body};
//   char* end = resp::write_command(buf, args);       // buf holds resp::command_size(args) bytes
//
//   resp::Parser p;                                    // one per connection
//   resp::Value v;
//   for (;;) {
//       const resp::Step s = p.parse(pending, v);      // pending: unconsumed bytes, from a frame's
//       if (s.status == resp::Status::need_more) {     // start; more are appended to it
//           break;                                     // keep pending as it is, read more
//       }
//       if (s.status == resp::Status::error) { close the connection: s.detail says why; }
//       use v (views into pending);  pending.remove_prefix(s.consumed);
//   }
//
// Commands are arrays of bulk strings: binary-safe, whatever the arguments hold.
//
// Replies: the RESP2 types (+simple, -error, :integer, $bulk with $-1 the null bulk, *array with
// *-1 the null array, nested) and, tolerated though the sink never asks for RESP3 (it sends no
// HELLO), the RESP3 ones: _ null, #t/#f, ,double, (big number, !blob error (an error), =verbatim
// (a bulk), %map, ~set, >push and |attribute. A frame is one top-level value; the parser finds
// where it ends and the caller sees it whole, as views into its own buffer (zero copy). It is
// incremental: a call that ends in need_more remembers how far the frame was checked, so that
// the next call (with the same bytes and more after them) resumes there instead of scanning the
// frame again. Everything is checked before anything is handed out: lines end in CRLF and hold
// no CR or LF, lengths and counts are decimal without sign or leading zero (-1 only where it
// means null), integers fit in 64 bits, nesting, counts, bulk sizes and the frame's size are
// bounded (Limits). A frame that breaks a rule is an error (the connection cannot be trusted
// after it); no input crashes or reads outside what it is given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace portcullis::deliver::resp {

// ---------------------------------------------------------------------------------------------
// Commands

// The encoding's size: *<n>\r\n then $<len>\r\n<arg>\r\n per argument.
size_t command_size(std::span<const std::string_view> args);
// Writes the command at out (command_size(args) bytes); returns the end.
char* write_command(char* out, std::span<const std::string_view> args);

// ---------------------------------------------------------------------------------------------
// Replies

enum class Type : uint8_t {
    simple,    // +OK
    error,     // -ERR ... or !<len> (RESP3 blob error)
    integer,   // :42
    bulk,      // $<len> or =<len> (RESP3 verbatim, "txt:" prefix and all)
    null,      // $-1, *-1, _
    array,     // *<n>
    boolean,   // #t / #f
    number,    // ,<double> and (<big number>: text only
    map,       // %<n>: n pairs, 2n values
    set,       // ~<n>
    push,      // ><n>: out of band (never a reply to a command)
    attribute, // |<n>: n pairs describing the next reply; out of band
};

std::string_view type_name(Type t);

struct Value {
    Type type = Type::null;
    // simple, error, bulk, number: the payload (a bulk's bytes, a line without its CRLF).
    std::string_view text;
    int64_t integer = 0; // integer; boolean: 1 or 0
    uint64_t count = 0;  // aggregates: the values inside (a map's or attribute's: 2 per pair)
    // The value's whole encoding, nested values included: what Elements walks.
    std::string_view raw;

    bool is_aggregate() const {
        return type == Type::array || type == Type::map || type == Type::set ||
               type == Type::push || type == Type::attribute;
    }
};

struct Limits {
    uint32_t max_depth = 16;          // aggregates within aggregates
    uint32_t max_count = 1u << 20;    // values in one aggregate
    uint64_t max_bulk = 512ull << 20; // bytes of one bulk string (Redis's proto-max-bulk-len)
    uint32_t max_line = 64 * 1024;    // bytes of a line (+, -, :, and the others)
    uint64_t max_frame = 0;           // bytes of a whole frame; 0: no limit but the others
};

enum class Status : uint8_t { done, need_more, error };

struct Step {
    Status status = Status::need_more;
    size_t consumed = 0;     // done: the frame's bytes; otherwise 0
    std::string_view detail; // error: why, a static string
};

class Parser {
public:
    explicit Parser(Limits limits = {}) : _limits(limits) {}

    // Looks for one frame at the start of `in`. done: `out` is the frame's top-level value,
    // viewing into `in`; the parser is ready for the next frame (the caller drops `consumed`
    // bytes). need_more: `in` holds a frame's beginning; call again with the same bytes and more
    // after them. error: the bytes are not RESP (or break a limit); the parser stays in error
    // until reset().
    Step parse(std::string_view in, Value& out);
    void reset();

    static constexpr uint32_t depth_capacity = 64; // Limits::max_depth is clamped to it

private:
    Limits _limits;
    bool _failed = false;
    std::string_view _error;
    size_t _pos = 0;                     // checked up to here: always the start of a value
    uint32_t _depth = 0;                 // open aggregates
    uint64_t _left[depth_capacity] = {}; // values still to come in each open aggregate
};

// Walks the values of an aggregate of a frame the parser returned (so, checked).
//
//   resp::Elements e(v);
//   resp::Value item;
//   while (e.next(item)) { ... }
class Elements {
public:
    explicit Elements(const Value& aggregate);
    bool next(Value& out);

private:
    std::string_view _rest;
    uint64_t _left = 0;
};

} // namespace portcullis::deliver::resp
