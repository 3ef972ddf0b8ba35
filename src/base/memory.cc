#include "portcullis/base/memory.hh"

#include <atomic>

namespace portcullis::base {

namespace {

std::atomic<ReleaseHook> release_hook{nullptr};

} // namespace

void set_release_hook(ReleaseHook hook) {
    release_hook.store(hook, std::memory_order_release);
}

void release_free_memory() {
    if (ReleaseHook hook = release_hook.load(std::memory_order_acquire)) {
        hook();
    }
}

} // namespace portcullis::base
