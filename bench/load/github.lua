-- wrk script for bench/load/run: a GitHub "push" delivery, signed like GitHub signs it.
--
-- Environment (set by the runner, which computes the signatures once with openssl):
--   BENCH_BODY_FILE   the exact payload bytes
--   BENCH_SIG256      "sha256=<hex HMAC-SHA256 of the payload>"
--   BENCH_SIG1        "sha1=<hex HMAC-SHA1 of the payload>" (GitHub still sends both)
--   BENCH_PIPELINE    requests written back to back per connection turn (default 1): with
--                     more, wrk spends less per request and stops being the bottleneck
--   BENCH_CONNECTION_CLOSE  "1": every request says "Connection: close", so each one comes on a
--                     new connection (wrk reconnects when the answer closes; over TLS, a new
--                     handshake per request: bench/load/run --handshakes)
-- Every request carries its own X-GitHub-Delivery GUID, as real deliveries do. At the end one
-- machine-readable line "bench-result key=value ..." is printed for the runner to parse,
-- including a count of every HTTP status seen.

local threads = {}

function setup(thread)
    thread:set("tid", #threads + 1)
    table.insert(threads, thread)
end

local function read_body()
    local path = os.getenv("BENCH_BODY_FILE")
    local f = assert(io.open(path, "rb"), "cannot open BENCH_BODY_FILE")
    local body = f:read("*a")
    f:close()
    return body
end

function init(args)
    statuses = {}
    counter = 0
    depth = tonumber(os.getenv("BENCH_PIPELINE") or "1")
    local marker = "@@DELIVERY@@"
    local headers = {
        ["User-Agent"] = "GitHub-Hookshot/5a2bd3c",
        ["Content-Type"] = "application/json",
        ["Accept"] = "*/*",
        ["X-GitHub-Event"] = "push",
        ["X-GitHub-Hook-ID"] = "412867431",
        ["X-GitHub-Hook-Installation-Target-Type"] = "repository",
        ["X-GitHub-Hook-Installation-Target-ID"] = "700158922",
        ["X-GitHub-Delivery"] = marker,
        ["X-Hub-Signature"] = os.getenv("BENCH_SIG1"),
        ["X-Hub-Signature-256"] = os.getenv("BENCH_SIG256"),
    }
    if os.getenv("BENCH_CONNECTION_CLOSE") == "1" then
        headers["Connection"] = "close"
    end
    local raw = wrk.format("POST", "/webhooks/github", headers, read_body())
    local at = raw:find(marker, 1, true)
    head = raw:sub(1, at - 1)
    tail = raw:sub(at + #marker)
end

-- Splicing the GUID between two prebuilt halves keeps wrk's per-request cost close to that of a
-- static request, so the client does not become the bottleneck.
function request()
    local batch = {}
    for i = 1, depth do
        counter = counter + 1
        batch[i] = head .. string.format("%08x-5c2e-11ef-8a2d-%012x", tid, counter) .. tail
    end
    return table.concat(batch)
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local totals = {}
    for _, thread in ipairs(threads) do
        local seen = thread:get("statuses")
        for status, n in pairs(seen) do
            totals[status] = (totals[status] or 0) + n
        end
    end
    local codes = {}
    for status, n in pairs(totals) do
        table.insert(codes, status .. ":" .. n)
    end
    table.sort(codes)
    local seconds = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format(
        "bench-result requests=%d seconds=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d " ..
        "max_us=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d non2xx=%d statuses=%s\n",
        summary.requests, seconds, summary.requests / seconds,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max, e.connect, e.read, e.write, e.timeout, e.status,
        #codes > 0 and table.concat(codes, ",") or "none"))
end
