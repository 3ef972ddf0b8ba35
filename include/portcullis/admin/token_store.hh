// Minted tokens (POST /v1/tokens, SPEC section 5): the tokens made through the control plane
// rather than written in the configuration, kept in <spool dir>/tokens.state so that they outlive
// restarts and reloads. Only each token's SHA-256 is kept; the plaintext is shown once, in the
// answer to the POST, and never written anywhere.
//
//   std::vector<MintedToken> minted;
//   if (std::string err = read_token_state(spool_dir, minted); !err.empty()) { fail(err); }
//   NewToken t = generate_token();                       // "pct_..." and its SHA-256
//   minted.push_back({...t.sha256...});
//   if (std::string err = write_token_state(spool_dir, minted); !err.empty()) { ... 500 ... }
//
// The file is text, one token a line, between a version line and a checksum line:
//
//   portcullis-tokens 1
//   token ci-reader 3f0c...(64 hex) 1796000000000000000 0 jobs:read:* !jobs:read:stripe
//   sha256 9a1b...(64 hex, of every byte before this line)
//
// with created_at and expires_at in Unix nanoseconds (expires_at 0: never); the framing is
// admin/state_file.hh's. It is replaced
// whole and atomically (base::replace_file), so a crash leaves the old set or the new one; a
// tokens.state.tmp left behind by a crash is never read. A file that does not parse, or whose
// checksum does not match, is an error naming the file and line: the start stops rather than
// guess which tokens were revoked.
#pragma once

#include "portcullis/admin/auth.hh"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::admin {

constexpr std::string_view token_state_file_name = "tokens.state";
// More would be a leak in a client, not a deployment: the file and the list stay small.
constexpr size_t max_minted_tokens = 1024;
constexpr size_t max_scopes_per_token = 64;

struct MintedToken {
    std::string name; // config::is_name
    TokenDigest sha256{};
    std::vector<std::string> scopes; // each parses with Scope::parse, none holds a space
    int64_t created_at = 0;          // Unix nanoseconds
    int64_t expires_at = 0;          // Unix nanoseconds; 0: never expires
    bool operator==(const MintedToken&) const = default;
};

// Parses a state file's text into out. Returns "" or "<path>:<line>: <why>" (wrong version, a
// bad line, a name or digest listed twice, a missing or wrong checksum, a last line without its
// newline). On error out is empty.
std::string parse_token_state(std::string_view text, const std::string& path,
                              std::vector<MintedToken>& out);
// The file's text, tokens in the order given.
std::string format_token_state(const std::vector<MintedToken>& tokens);

// Reads <dir>/tokens.state (a missing file holds no token). Returns "" or the error.
std::string read_token_state(const std::string& dir, std::vector<MintedToken>& out);
// Replaces <dir>/tokens.state atomically and durably (written, fdatasynced, renamed, the folder
// fsynced) before it returns. Blocking: called on the control-plane thread, which is acceptable
// because minting and revoking are rare. Returns "" or the error; on error the old file stays.
std::string write_token_state(const std::string& dir, const std::vector<MintedToken>& tokens);

struct NewToken {
    std::string token; // "pct_" + 43 characters of base64url: 256 random bits
    TokenDigest sha256{};
};
// A fresh token from the system's CSPRNG (the one `portcullis token new` prints).
NewToken generate_token();

} // namespace portcullis::admin
