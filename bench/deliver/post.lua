-- wrk script for bench/deliver/run: POSTs BENCH_BODY_FILE's bytes to the URL's path.
--   BENCH_DELAY_MS   when set, each connection waits this long between its requests (wrk's
--                    delay()), so that C connections send about C * 1000 / BENCH_DELAY_MS a second
-- Prints one line "bench-result requests=N seconds=S rps=R statuses=CODE:N,..." at the end.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    statuses = {}
    local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"), "cannot open BENCH_BODY_FILE")
    local body = f:read("*a")
    f:close()
    req = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
    pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
end

function request()
    return req
end

if os.getenv("BENCH_DELAY_MS") then
    function delay()
        return pause
    end
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local totals = {}
    for _, thread in ipairs(threads) do
        for status, n in pairs(thread:get("statuses")) do
            totals[status] = (totals[status] or 0) + n
        end
    end
    local codes = {}
    for status, n in pairs(totals) do
        table.insert(codes, status .. ":" .. n)
    end
    table.sort(codes)
    local seconds = summary.duration / 1e6
    io.write(string.format("bench-result requests=%d seconds=%.3f rps=%.1f errors=%d statuses=%s\n",
        summary.requests, seconds, summary.requests / seconds,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        #codes > 0 and table.concat(codes, ",") or "none"))
end
