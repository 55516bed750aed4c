-- wrk script: PUT the file named by BENCH_BODY (1 KiB in bench/run.sh) and
-- count the answers per HTTP status across all threads. done() prints one line:
--   RESULT requests=N secs=S rps=R p50_us=A p90_us=B p99_us=C max_us=D errors=E status_201=N ...
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/octet-stream"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do
      agg[code] = (agg[code] or 0) + n
    end
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d secs=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d errors=%d",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout))
  for code, n in pairs(agg) do
    io.write(string.format(" status_%d=%d", code, n))
  end
  io.write("\n")
end
