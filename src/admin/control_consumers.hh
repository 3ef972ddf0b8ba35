// The control plane's consumers (POST, GET /v1/consumers, DELETE /v1/consumers/{name}; SPEC
// section 10), apart from control_plane.cc, which authorizes the request, parks the connection
// and relays the answers.
//
// A registration (or a removal) is one durable step and then one publish:
//   1. the request is checked against the configuration in use (name clash 409, unknown route
//      422, bad fields 400);
//   2. <spool dir>/consumers.state is replaced with the new list (the token's digest and the
//      signing secret in it): durable before anything is promised;
//   3. the main thread is asked (io::ReloadDesk::Errand::consumers, SIGUSR1) to publish the
//      configuration in use again with the consumers the file lists (io::Reloader::republish);
//      the connection waits, the loop goes on;
//   4. once the new snapshot is in use (the sink added or removed by the engine's reconfigure),
//      the token is added (or was revoked at step 2, so that a removal takes effect at once) and
//      the answer goes out. If the publish was refused, the old file is written back, the token
//      restored, and the answer is 500.
// One change at a time: another while one waits is answered 503 with Retry-After.
#pragma once

#include "portcullis/admin/auth.hh"
#include "portcullis/admin/consumer_store.hh"
#include "portcullis/admin/metrics.hh"
#include "portcullis/base/event.hh"
#include "portcullis/base/json.hh"
#include "portcullis/config/snapshot.hh"
#include "portcullis/deliver/engine.hh"
#include "portcullis/io/reload.hh"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::admin {

// What a handler answers: status 0 means the change waits for the main thread (poll()).
struct ConsumerAnswer {
    uint16_t status = 0;
    std::string body;
    std::string extra_headers;
};

// What the handlers use of the control plane, for one call.
struct ConsumerContext {
    const config::Snapshot& snap;
    TokenSet& tokens;
    io::ReloadDesk* desk; // null without reloads: registration is then unavailable (503)
    int64_t now;          // Unix ns
    std::function<void(const base::Event&)> publish;
};

class ConsumerRegistry {
public:
    // Start-up: reads consumers.state (the same file serve derived the snapshot from) and adds
    // each consumer's token. Returns "" or the error.
    std::string load(const std::string& spool_dir, TokenSet& tokens);
    // After a reload rebuilt the token set: the consumers' tokens again.
    void add_tokens(TokenSet& tokens) const;

    ConsumerAnswer register_consumer(std::string_view body, const Grant& who, ConsumerContext& cx);
    ConsumerAnswer remove(std::string_view name, const Grant& who, ConsumerContext& cx);
    // The answer of the change that waits, once the main thread has published it (or refused).
    std::optional<ConsumerAnswer> poll(ConsumerContext& cx);
    bool pending() const { return _pending.has_value(); }

    ConsumerAnswer list(const std::vector<deliver::SinkReport>& reports) const;
    // /healthz's "consumers" member (an object by name), /metrics' family.
    void write_health(base::JsonWriter<base::StringBuffer>& w,
                      const std::vector<deliver::SinkReport>& reports) const;
    void write_metrics(Exposition& e, const std::vector<deliver::SinkReport>& reports) const;
    size_t size() const { return _consumers.size(); }

private:
    struct Pending {
        uint64_t ticket = 0;
        bool removal = false;
        std::vector<Consumer> before;
        std::vector<Consumer> after;
        Consumer changed;  // the one added or removed
        std::string token; // a registration's plaintext token, for its answer only
        std::string by;    // the requesting token's name, for the log
    };

    // -1: not probed (no health_path), else 0 or 1 from the engine's report of its sink.
    static int healthy(const Consumer& c, const std::vector<deliver::SinkReport>& reports);
    ConsumerAnswer finish(const io::ReloadOutcome& o, ConsumerContext& cx);
    // A 503 when no change can be made now ("consumers cannot be <done> here" without reloads,
    // or another change still being applied), else nullopt.
    std::optional<ConsumerAnswer> refusal(const ConsumerContext& cx, std::string_view done) const;

    std::vector<Consumer> _consumers;
    std::string _dir;
    std::optional<Pending> _pending;
};

} // namespace portcullis::admin
