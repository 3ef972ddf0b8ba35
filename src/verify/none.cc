// `none`: every request passes. It must be chosen explicitly and `check` warns about it.
#include "portcullis/verify/verifier.hh"

#include <memory>

namespace portcullis::verify {

namespace {

class NoneVerifier final : public HeaderOnlyScheme {
public:
    Reason begin(std::span<const http::Header> /*headers*/, int64_t /*now_unix_ns*/,
                 VerifyState& st) const override {
        st.reset();
        st.begun = true;
        return Reason::ok;
    }
};

} // namespace

std::unique_ptr<Verifier> make_none_verifier(const config::VerifyConfig& /*cfg*/,
                                             std::string& /*error*/) {
    return std::make_unique<NoneVerifier>();
}

} // namespace portcullis::verify
