// Giving freed memory back to the system. The allocator keeps what the process frees, for reuse;
// after a rare and large release (retention deleting a drained backlog's segments, a start-up's
// list of what it found) the program asks it to return what it holds free. serve installs the
// allocator's own collection (mimalloc's mi_collect); elsewhere (tests, tools) nothing happens.
//
//   base::set_release_hook(+[] { mi_collect(true); });   // once, at start
//   base::release_free_memory();                          // after a large release
#pragma once

namespace portcullis::base {

using ReleaseHook = void (*)();

void set_release_hook(ReleaseHook hook);
// Calls the hook on the calling thread (the allocator collects that thread's heap first).
void release_free_memory();

} // namespace portcullis::base
