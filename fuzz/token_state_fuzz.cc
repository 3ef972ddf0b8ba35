// tokens.state comes back from disk at every start: a torn or edited file must never crash the
// loader, and whatever it accepts must be a set the control plane could have written (names and
// scopes that pass the configuration's rules, no name or digest twice) and write back the same.
#include "fuzz_check.hh"

#include "portcullis/admin/token_store.hh"
#include "portcullis/config/config.hh"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis;
using portcullis::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<admin::MintedToken> tokens;
    const std::string err = admin::parse_token_state(text, "tokens.state", tokens);
    if (!err.empty()) {
        check(tokens.empty() && err.starts_with("tokens.state:"));
        return 0;
    }
    check(tokens.size() <= admin::max_minted_tokens);
    admin::TokenSet set;
    for (const admin::MintedToken& t : tokens) {
        check(config::is_name(t.name) && !t.scopes.empty());
        check(set.add(t.name, t.sha256, t.scopes));
    }
    // What parses is what portcullis writes: the same bytes come back.
    check(admin::format_token_state(tokens) == text);
    return 0;
}
