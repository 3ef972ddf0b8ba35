// The control plane's minted tokens (POST, GET /v1/tokens, DELETE /v1/tokens/{name}; SPEC
// section 5), apart from control_plane.cc, which authorizes the request (admin:tokens), logs
// and counts refusals, and sends the answer.
//
// A mint or a revocation replaces <spool dir>/tokens.state with a blocking write, fdatasync and
// rename on the control plane's thread, and the answer goes out only after that: tokens are
// minted and revoked rarely, and a token must not be handed out (or a revocation confirmed)
// before a restart would keep it so. Only then does the token set change and the event go out.
#pragma once

#include "portcullis/admin/auth.hh"
#include "portcullis/admin/token_store.hh"
#include "portcullis/base/event.hh"
#include "portcullis/config/snapshot.hh"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::admin {

struct TokenAnswer {
    uint16_t status = 200;
    std::string body;
    // A refusal the control plane logs and counts as tokens_refused (a scope the minter does not
    // hold, a name taken, a configured token's DELETE), with what the log says of it.
    bool refused = false;
    std::string detail;
};

// What the handlers use of the control plane, for one call.
struct TokenContext {
    const config::Snapshot& snap;
    TokenSet& tokens;
    int64_t now; // Unix ns
    std::function<void(const base::Event&)> publish;
};

class MintedTokens {
public:
    // Start-up: reads tokens.state and adds each token. Returns "" or the error (a clash with a
    // configured token names both ways out).
    std::string load(const std::string& spool_dir, TokenSet& tokens);
    // After a reload rebuilt the token set: the minted tokens again; one whose name a configured
    // token took since is kept out, and the log says so.
    void add_tokens(TokenSet& tokens) const;

    TokenAnswer list(const config::Snapshot& snap) const;
    TokenAnswer mint(std::string_view body, const Grant& who, TokenContext& cx);
    TokenAnswer revoke(std::string_view name, const Grant& who, TokenContext& cx);
    size_t size() const { return _minted.size(); }

private:
    // As tokens.state holds them (the token set has them too).
    std::vector<MintedToken> _minted;
};

} // namespace portcullis::admin
