// `none`: every request passes. It must be chosen explicitly and `check` warns about it.
#include "portcullis/verify/verifier.hh"

#include <memory>

namespace portcullis::verify {

namespace {

class NoneVerifier final : public Verifier {
public:
    Reason begin(std::span<const http::Header> /*headers*/, int64_t /*now_unix_ns*/,
                 VerifyState& st) const override {
        st.reset();
        st.begun = true;
        return Reason::ok;
    }

    void update(VerifyState& /*st*/, std::span<const uint8_t> /*body_part*/) const override {}

    Reason finish(VerifyState& st, std::span<const uint8_t> /*whole_body*/) const override {
        if (!st.begun) {
            return Reason::malformed;
        }
        st.begun = false;
        return Reason::ok;
    }
};

} // namespace

std::unique_ptr<Verifier> make_none_verifier(const config::VerifyConfig& /*cfg*/,
                                             std::string& /*error*/) {
    return std::make_unique<NoneVerifier>();
}

} // namespace portcullis::verify
