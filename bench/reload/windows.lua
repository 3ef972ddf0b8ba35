-- wrk script for bench/reload/run: bench/load/github.lua's signed GitHub push (same requests,
-- same "bench-result" line), plus a count of the answers per 100 ms window of CLOCK_MONOTONIC.
--
-- The clock is read in the response hook with clock_gettime(CLOCK_MONOTONIC) through LuaJIT's FFI
-- (os.clock is the process's CPU time, os.time whole seconds: neither says when an answer came).
-- CLOCK_MONOTONIC is the clock of the whole machine, Python's time.monotonic(): the reload driver
-- stamps its requests with it, so windows and reloads are put on one time line.
-- Window w holds the answers read in [w / 10 s, (w + 1) / 10 s); each thread counts into its own
-- table (no sharing), and done() sums them and prints one "bench-window W COUNT" line per window.
-- The cost per answer is one vDSO call and a table increment (the hook is also what counts the
-- statuses in github.lua, so wrk parses every answer either way).

dofile(os.getenv("BENCH_LOAD_DIR") .. "/github.lua")

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *ts);
]])
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")

local all_threads = {}
local github_setup, github_init, github_response, github_done = setup, init, response, done

function setup(thread)
    table.insert(all_threads, thread)
    github_setup(thread)
end

function init(args)
    windows = {}
    github_init(args)
end

function response(status, headers, body)
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    -- tenths of a second since boot: an integer, exact in a Lua number for centuries.
    local w = tonumber(ts.tv_sec) * 10 + math.floor(tonumber(ts.tv_nsec) / 100000000)
    windows[w] = (windows[w] or 0) + 1
    github_response(status, headers, body)
end

function done(summary, latency, requests)
    github_done(summary, latency, requests)
    local totals, keys = {}, {}
    for _, thread in ipairs(all_threads) do
        for w, n in pairs(thread:get("windows")) do
            if totals[w] == nil then
                table.insert(keys, w)
            end
            totals[w] = (totals[w] or 0) + n
        end
    end
    table.sort(keys)
    for _, w in ipairs(keys) do
        io.write(string.format("bench-window %d %d\n", w, totals[w]))
    end
end
