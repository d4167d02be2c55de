-- common.lua: what every wrk script of the bench shares. It installs wrk's
-- setup/response/delay/done callbacks as globals; a script only defines
-- init(args) and request().
--
-- done prints one machine-readable line for bench/run.sh:
--   WRK name=... requests=... duration_s=... rps=... p50_ms=... p99_ms=... s2xx=... sold_out=...
local ffi = require("ffi")

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]

local M = {}
local ts = ffi.new("bench_timespec")

-- now_ms is a monotonic clock in milliseconds (os.clock is CPU time, and
-- os.time has only seconds).
function M.now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- lines reads a file, keeping the lines of this thread: line i (1-based)
-- belongs to thread ((i-1) % nthreads) + 1.
function M.lines(path, tid, nthreads)
  local f = assert(io.open(path, "r"))
  local out, i = {}, 0
  for l in f:lines() do
    i = i + 1
    if (i - 1) % nthreads == tid - 1 then
      out[#out + 1] = l
    end
  end
  f:close()
  return out
end

-- pacer returns a delay() that sends on a fixed schedule of rate
-- requests/s per thread, whatever the response times, as far as the
-- thread's connections allow. wrk asks delay() after every response for the
-- wait before that connection's next request. (wrk times a request from its
-- send, so queueing behind a late schedule does not show in its latency.)
function M.pacer(rate)
  local interval = 1000.0 / rate
  local next_at = nil
  return function()
    local now = M.now_ms()
    if next_at == nil or next_at < now - 1000 then
      next_at = now -- never build up more than a second of debt
    end
    local d = next_at - now
    next_at = next_at + interval
    if d < 0 then
      return 0
    end
    return d
  end
end

-- install defines setup, response and done. It defines no delay(): wrk
-- then sends the next request as soon as a response is read.
function M.install(name)
  local threads = {}

  function setup(thread)
    threads[#threads + 1] = thread
    thread:set("tid", #threads)
  end

  -- Per-thread status counts (each thread has its own Lua state).
  counts = { s2xx = 0, s202 = 0, sold_out = 0, s409 = 0, s4xx = 0, s5xx = 0, other = 0 }

  function response(status, headers, body)
    if status == 202 then
      counts.s202 = counts.s202 + 1
      counts.s2xx = counts.s2xx + 1
    elseif status >= 200 and status < 300 then
      counts.s2xx = counts.s2xx + 1
    elseif status == 409 then
      counts.s409 = counts.s409 + 1
      if body and body:find('"sold_out"', 1, true) then
        counts.sold_out = counts.sold_out + 1
      end
    elseif status >= 400 and status < 500 then
      counts.s4xx = counts.s4xx + 1
    elseif status >= 500 then
      counts.s5xx = counts.s5xx + 1
    else
      counts.other = counts.other + 1
    end
  end

  function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
      local c = t:get("counts")
      for k, v in pairs(c) do
        total[k] = (total[k] or 0) + v
      end
    end
    local secs = summary.duration / 1e6
    local e = summary.errors
    local parts = {
      "WRK", "name=" .. name,
      "requests=" .. summary.requests,
      string.format("duration_s=%.3f", secs),
      string.format("rps=%.1f", summary.requests / secs),
      string.format("p50_ms=%.3f", latency:percentile(50) / 1000),
      string.format("p90_ms=%.3f", latency:percentile(90) / 1000),
      string.format("p95_ms=%.3f", latency:percentile(95) / 1000),
      string.format("p99_ms=%.3f", latency:percentile(99) / 1000),
      string.format("max_ms=%.3f", latency.max / 1000),
      "net_errors=" .. (e.connect + e.read + e.write + e.timeout),
      "timeouts=" .. e.timeout,
    }
    for _, k in ipairs({ "s2xx", "s202", "s409", "sold_out", "s4xx", "s5xx", "other" }) do
      parts[#parts + 1] = k .. "=" .. (total[k] or 0)
    end
    io.write(table.concat(parts, " "), "\n")
  end
end

return M
