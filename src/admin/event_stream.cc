#include "portcullis/admin/event_stream.hh"

#include "portcullis/base/json.hh"
#include "portcullis/base/reject_reason.hh"
#include "portcullis/base/time.hh"

#include <netinet/in.h>

#include <algorithm>
#include <charconv>

namespace portcullis::admin {

namespace {

using base::EventType;

// One item of ?types=, decoded: its type bits, 0 when it names none.
TypeMask match_item(std::string_view item) {
    TypeMask mask = 0;
    const bool prefix = item.ends_with('*');
    const std::string_view stem = prefix ? item.substr(0, item.size() - 1) : item;
    for (size_t i = 0; i < base::event_type_count; ++i) {
        const std::string_view name = base::event_type_name(static_cast<EventType>(i));
        if (prefix ? name.starts_with(stem) : name == stem) {
            mask |= TypeMask{1} << i;
        }
    }
    return mask;
}

// `%2C` -> `,` and `%2A` -> `*` (either case), the two a client may escape; nothing else is
// decoded, so that any other `%` fails as an unknown type.
std::string decode(std::string_view value) {
    std::string out;
    for (size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '%' && i + 2 < value.size() && value[i + 1] == '2') {
            const char c = value[i + 2];
            if (c == 'C' || c == 'c' || c == 'A' || c == 'a') {
                out.push_back(c == 'C' || c == 'c' ? ',' : '*');
                i += 2;
                continue;
            }
        }
        out.push_back(value[i]);
    }
    return out;
}

} // namespace

std::optional<TypeMask> parse_types(std::string_view value, std::string* why) {
    const std::string text = decode(value);
    std::string_view rest = text;
    if (rest.empty()) {
        *why = "types: a comma-separated list of event types (job.*, webhook.rejected)";
        return std::nullopt;
    }
    TypeMask mask = 0;
    while (true) {
        const size_t comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        const TypeMask m = match_item(item);
        if (m == 0) {
            *why = item.empty() ? std::string("types: an empty item")
                                : "types: no event type matches " + std::string(item);
            return std::nullopt;
        }
        mask |= m;
        if (comma == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(comma + 1);
    }
    return mask;
}

std::optional<uint64_t> parse_last_event_id(std::string_view value) {
    if (value.empty() || value.size() > 19) {
        return std::nullopt;
    }
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc{} || end != value.data() + value.size()) {
        return std::nullopt;
    }
    return v;
}

void format_event(std::string& out, uint64_t id, const base::Event& e, const EventNames& names) {
    const std::string_view type = base::event_type_name(e.type);
    char tmp[24];
    out += "id: ";
    out.append(tmp, std::to_chars(tmp, tmp + sizeof tmp, id).ptr);
    out += "\nevent: ";
    out += type;
    out += "\ndata: ";
    base::StringBuffer buf(out);
    base::JsonWriter w(buf);
    char at[24];
    w.begin_object()
        .key("id")
        .number(static_cast<int64_t>(id))
        .key("type")
        .string(type)
        .key("ts")
        .string(base::format_rfc3339(e.ts_ns, at));
    if (const std::string_view route = names.routes != nullptr && e.route != base::Event::none
                                           ? names.routes->name(e.route)
                                           : std::string_view();
        !route.empty()) {
        w.key("route").string(route);
    }
    if (e.sink < names.sinks.size()) {
        w.key("sink").string(names.sinks[e.sink]);
    }
    const bool webhook = e.type == EventType::webhook_received ||
                         e.type == EventType::webhook_rejected ||
                         e.type == EventType::ratelimit_limited;
    if (e.id_size != 0) {
        w.key(webhook ? "request_id" : "job").string(e.id_view());
    }
    if (e.status != 0) {
        w.key("status").number(e.status);
    }
    if (e.type == EventType::webhook_rejected || e.type == EventType::ratelimit_limited) {
        w.key("reason").string(base::reject_reason_code(
            static_cast<base::RejectReason>(e.reason < base::reject_reason_count ? e.reason : 0)));
    }
    char ip[INET6_ADDRSTRLEN];
    if (e.has_peer) {
        w.key("peer").string(e.peer.format_ip(ip));
    }
    if (e.has_client) {
        w.key("client").string(e.client.format_ip(ip));
    }
    if (e.shard != 0xff) {
        w.key("shard").number(e.shard);
    }
    switch (e.type) {
    case EventType::webhook_received:
        w.key("outcome").string(e.text_view()).key("bytes").number(e.number);
        break;
    case EventType::job_enqueued:
        w.key("outcome")
            .string(e.status == 202 ? "queued" : "duplicate")
            .key("bytes")
            .number(e.number)
            .key("token")
            .string(e.text_view());
        break;
    case EventType::webhook_rejected:
        if (e.text_size != 0) {
            w.key("headers").raw(e.text_view());
        }
        break;
    case EventType::ratelimit_limited:
        w.key("limit").string(e.text_view()).key("retry_after_s").number(e.number);
        break;
    case EventType::job_leased:
    case EventType::job_nacked:
    case EventType::job_dead:
    case EventType::job_delivered:
        w.key("attempt").number(e.attempt);
        break;
    case EventType::sink_breaker_opened:
        w.key("consecutive_failures").number(e.number);
        break;
    case EventType::config_reloaded:
        w.key("generation").number(e.number).key("routes").number(e.attempt);
        break;
    case EventType::config_rejected:
        w.key("error").string(e.text_view());
        break;
    case EventType::config_token_minted:
    case EventType::config_token_revoked:
        w.key("token").string(e.text_view());
        break;
    case EventType::consumer_registered:
    case EventType::consumer_removed:
    case EventType::consumer_healthy:
    case EventType::consumer_unhealthy:
        w.key("consumer").string(e.text_view());
        break;
    case EventType::tls_certificate_reloaded:
        w.key("cert")
            .string(e.text_view())
            .key("not_after")
            .string(base::format_rfc3339(e.number * base::ns_per_s, at));
        break;
    default:
        break;
    }
    w.end_object();
    out += "\n\n";
}

EventBuffer::EventBuffer(size_t capacity, EventNames names)
    : _capacity(capacity == 0 ? 1 : capacity), _names(std::move(names)) {
    _slots.reserve(_capacity);
}

EventBuffer::Slot& EventBuffer::next_slot() {
    const size_t i = _newest % _capacity; // id _newest + 1
    if (i == _slots.size()) {
        _slots.emplace_back(); // still growing: a take() that found its queue empty left none
    }
    return _slots[i];
}

void EventBuffer::commit(Slot& s) {
    s.frame.clear();
    ++_newest;
    _held = std::min<uint64_t>(_held + 1, _capacity);
}

uint64_t EventBuffer::publish(const base::Event& e) {
    Slot& s = next_slot();
    s.event = e;
    commit(s);
    return _newest;
}

size_t EventBuffer::take(base::EventQueue& q) {
    size_t n = 0;
    for (; n < q.capacity(); ++n) {
        Slot& s = next_slot();
        if (!q.try_pop(s.event)) { // a failed pop leaves the slot (and the event it holds) as is
            break;
        }
        commit(s);
    }
    return n;
}

uint64_t EventBuffer::next_after(std::optional<uint64_t> last_id) const {
    if (!last_id) {
        return _newest + 1;
    }
    if (*last_id > _newest || *last_id + 1 < oldest()) {
        return oldest();
    }
    return *last_id + 1;
}

uint64_t EventBuffer::collect(uint64_t& next, TypeMask mask, std::string& out) {
    uint64_t lost = 0;
    if (next < oldest()) {
        lost = oldest() - next;
        next = oldest();
    }
    for (; next <= _newest; ++next) {
        Slot& s = _slots[(next - 1) % _capacity];
        if ((mask & (TypeMask{1} << static_cast<size_t>(s.event.type))) != 0) {
            if (s.frame.empty()) {
                format_event(s.frame, next, s.event, _names);
            }
            out += s.frame;
        }
    }
    return lost;
}

} // namespace portcullis::admin
