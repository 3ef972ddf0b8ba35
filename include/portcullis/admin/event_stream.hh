// GET /events (SPEC sections 5 and 9): the events of every thread, numbered in the order the
// control plane takes them and kept in one ring buffer (admin.events.buffer), from which every
// subscriber is served by id: a reconnect with Last-Event-ID and a live stream are the same read.
// An event is formatted as its Server-Sent Events frame when a subscriber first asks for it, and
// the frame is kept for the others: with nobody watching, events cost a copy, not a format.
//
//   EventBuffer buf(10000, names);
//   buf.publish(event);                          // control-plane thread: numbers and keeps it
//   buf.take(queue);                             // or: all of a thread's queue, in its order
//   uint64_t next = buf.next_after(last_id);     // where a subscriber starts
//   buf.collect(next, filter, out);              // appends its frames since, advances next
#pragma once

#include "portcullis/base/event.hh"
#include "portcullis/config/snapshot.hh"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::admin {

// Which event types a subscriber wants: bit i for base::EventType i.
using TypeMask = uint32_t;
constexpr TypeMask all_types = (TypeMask{1} << base::event_type_count) - 1;
static_assert(base::event_type_count <= 32);

// `?types=job.*,webhook.rejected`: a comma-separated list of type names, each exact or a
// prefix ending in `*` (`job.*`, `*`); `%2C` and `%2A` are taken for `,` and `*`. nullopt (and
// why) for an empty list, an empty item, or an item that names no type.
std::optional<TypeMask> parse_types(std::string_view value, std::string* why);

// The Last-Event-ID header: a decimal id of 1 to 19 digits. nullopt for anything else (empty is
// the caller's to treat as absent, as EventSource does).
std::optional<uint64_t> parse_last_event_id(std::string_view value);

// Route and sink names, by the numbers events carry: a route's slot (config::RouteSlots, which
// outlives the buffer), a sink's index.
struct EventNames {
    const config::RouteSlots* routes = nullptr;
    std::vector<std::string> sinks;
};

// One SSE frame: "id: N\nevent: TYPE\ndata: {json}\n\n". The data is one JSON object with id,
// type, ts (RFC 3339, ms) and the type's fields; every string is JSON-escaped.
void format_event(std::string& out, uint64_t id, const base::Event& e, const EventNames& names);

class EventBuffer {
public:
    EventBuffer(size_t capacity, EventNames names);
    // A reload changed the sinks: names by their (stable) numbers from now on.
    void set_sinks(std::vector<std::string> sinks) { _names.sinks = std::move(sinks); }

    // Numbers e (ids start at 1 and increase by one) and keeps it, dropping the oldest when
    // full. Returns its id.
    uint64_t publish(const base::Event& e);
    // Publishes what q holds, in its order, popping each straight into its slot (at most q's
    // capacity, so that a producer that keeps pushing cannot hold the caller). Returns how many.
    size_t take(base::EventQueue& q);

    // The first id a subscriber gets: after last_id when the buffer still holds what follows
    // it; the oldest held when last_id is older than that, or unknown (newer than the newest:
    // another run's id); the next one to come without last_id.
    uint64_t next_after(std::optional<uint64_t> last_id) const;
    // Appends the frames from id `next` on whose types are in mask (formatting those no
    // subscriber has asked for yet), and sets next past the newest. Returns how many were lost:
    // those before the oldest held (0 normally).
    uint64_t collect(uint64_t& next, TypeMask mask, std::string& out);

    uint64_t oldest() const { return _newest + 1 - _held; }
    uint64_t newest() const { return _newest; }
    size_t capacity() const { return _capacity; }

private:
    struct Slot {
        base::Event event;
        std::string frame; // "" until a subscriber asks; its capacity is kept for the next event
    };
    // The slot the next id goes to (ids start at 1): the buffer grows to its capacity as events
    // come, so that an idle process does not hold a full buffer's memory.
    Slot& next_slot();
    // next_slot() now holds the next event: numbers it (its frame is formatted when asked for).
    void commit(Slot& s);

    size_t _capacity;
    std::vector<Slot> _slots;
    EventNames _names;
    uint64_t _newest = 0;
    uint64_t _held = 0;
};

} // namespace portcullis::admin
