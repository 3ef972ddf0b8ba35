// The NATS client protocol as the NATS sink speaks it (https://docs.nats.io/reference/reference-
// protocols/nats-protocol): a parser of what the server sends, the JSON the sink reads (INFO,
// the JetStream publish acknowledgement), the frames it writes (CONNECT, SUB, HPUB) and NKey
// authentication (a user seed signing the server's nonce).
//
//   nats::Parser p;                                    // one per connection
//   std::string_view in = bytes received, not yet consumed;
//   for (;;) {
//       const nats::Frame f = p.feed(in);
//       if (f.op == nats::Op::need_more) { keep `in` (the frame is incomplete); break; }
//       if (f.op == nats::Op::error) { close: f.text says why; break; }
//       handle(f);                                     // views into `in`
//       in.remove_prefix(f.consumed);
//   }
//
// The parser is incremental in the simplest way: a frame is handed over once all its bytes are
// in `in`, as views into it (zero-copy), and the caller keeps the unconsumed bytes; so any split
// of the server's bytes gives the same frames. It remembers how far it looked for the end of the
// control line, so that a long INFO arriving in pieces is scanned once. Sizes are bounded
// (Limits): a control line, an INFO or a message over its limit is an error, never a large
// buffer. Op names are case-insensitive, as the protocol says; lines end with CRLF.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace portcullis::deliver::nats {

enum class Op : uint8_t {
    need_more, // the frame is not complete: feed again with more bytes appended
    info,      // text: the JSON object
    msg,       // MSG or HMSG: subject, sid, reply, headers (HMSG), payload
    ping,
    pong,
    ok,    // +OK
    err,   // -ERR: text is the server's message, quotes removed
    error, // a protocol error: text says what (static text); the connection is unusable
};

struct Limits {
    size_t max_control = 4096;      // a control line other than INFO, CRLF included
    size_t max_info = 64 * 1024;    // an INFO line, CRLF included
    size_t max_message = 64 * 1024; // the headers and payload of one MSG or HMSG
};

struct Frame {
    Op op = Op::need_more;
    size_t consumed = 0; // bytes of `in` the frame took (0 for need_more and error)
    std::string_view text;
    std::string_view subject;
    std::string_view reply; // empty when none
    uint64_t sid = 0;
    std::string_view headers; // HMSG: the header block, "NATS/1.0..." to its empty line
    std::string_view payload;
};

// The largest total a frame can take with these limits: a receive buffer that holds this much
// beyond what one receive brings never fills with an incomplete frame.
size_t max_frame_bytes(const Limits& limits);

class Parser {
public:
    explicit Parser(Limits limits = {}) : _limits(limits) {}

    // Parses the frame at the start of `in`. After an error, every call returns it again.
    Frame feed(std::string_view in);
    void reset() {
        _scanned = 0;
        _failed = {};
    }

private:
    Frame fail(std::string_view why);

    Limits _limits;
    size_t _scanned = 0; // bytes of the current control line known to hold no LF
    std::string_view _failed;
};

// A header block's first line: "NATS/1.0", or "NATS/1.0 503" (no responders), with an optional
// description. Fields follow as "Name: value" lines.
struct HeaderStatus {
    bool valid = false;
    uint16_t status = 0; // 0 when the line has none
    std::string_view description;
};
HeaderStatus parse_header_status(std::string_view block);

// What the server says in INFO, the fields the sink uses.
struct ServerInfo {
    std::string server_id;
    std::string version;
    uint64_t max_payload = 1024 * 1024;
    bool headers = false;
    bool tls_required = false;
    bool tls_available = false; // TLS offered, not required (allow_non_tls)
    bool auth_required = false;
    std::string nonce;
};
// False, with why, when the JSON is not an object or a field has the wrong type.
bool parse_info(std::string_view json, ServerInfo& out, std::string& why);

// A JetStream publish acknowledgement: {"stream":"S","seq":N[,"duplicate":true]} or
// {"error":{"code":C,"err_code":E,"description":"..."}}.
struct PubAck {
    enum class Kind : uint8_t { stored, error, malformed };
    Kind kind = Kind::malformed;
    std::string_view stream; // raw JSON string token, quotes included
    uint64_t seq = 0;
    bool duplicate = false;
    int64_t code = 0;
    std::string_view description; // raw JSON string token, quotes included
};
PubAck parse_pub_ack(std::string_view json);
// The same through the general JSON reader only: parse_pub_ack reads nats-server's own form in
// one pass and hands anything else to this (tests and the fuzzer check that both agree).
PubAck parse_pub_ack_json(std::string_view json);

// NKeys: a user seed ("SU" and 56 base32 characters: prefix bytes, the Ed25519 seed, CRC-16).
struct NKey {
    std::array<uint8_t, 64> private_key{}; // BoringSSL's form: seed then public key
    std::string public_key;                // "U" and 55 base32 characters
};
// False, with why (never quoting the seed), when the seed is not a user seed or its CRC fails.
bool nkey_from_seed(std::string_view seed, NKey& out, std::string& why);
// The signature of nonce, base64url without padding, as CONNECT's "sig".
std::string nkey_sign(const NKey& key, std::string_view nonce);
// The CRC-16 (XMODEM) NKeys carry, over data.
uint16_t nkey_crc16(std::span<const uint8_t> data);

// Credentials for CONNECT (views; the caller keeps them alive while it is written).
struct ConnectOptions {
    std::string_view name;
    std::string_view lang = "c++";
    std::string_view version;
    std::string_view user;
    std::string_view pass;
    std::string_view auth_token;
    std::string_view nkey; // public key
    std::string_view sig;
    bool tls_required = false;
};
// "CONNECT {...}\r\n" appended to out.
void append_connect(std::string& out, const ConnectOptions& o);

// Header field names and values NATS can carry: a name is printable ASCII without ':' or space;
// a value holds no CR, LF or NUL (nor other control characters than tab). Empty when fine, else
// why (naming the field, never quoting the value).
std::string header_refusal(std::string_view name, std::string_view value);

} // namespace portcullis::deliver::nats
