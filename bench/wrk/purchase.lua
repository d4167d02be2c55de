-- purchase.lua: the purchase flow under wrk. Every request is a different
-- user buying once with their own purchase token, from the file that
-- bench/cmd/prep wrote ("<jwt> <token>" per line).
--
--   wrk -t2 -c64 -d10s -s bench/wrk/purchase.lua http://127.0.0.1:18080 -- users.txt ITEM RATE THREADS
--
-- RATE paces the whole run in requests/s (0 = unpaced); THREADS must equal
-- wrk's -t. A thread that used all its users stops, so no token is sent
-- twice and every 202 is a new order.
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local reqs, n, i = {}, 0, 0
local pace = nil
local healthz = nil

-- Requests are formatted in init: wrk sets the Host header just before it.
function init(args)
  healthz = wrk.format("GET", "/healthz")
  local path, item = args[1], args[2]
  local rate, nthreads = tonumber(args[3] or "0"), tonumber(args[4] or "1")
  if rate > 0 then
    pace = common.pacer(rate / nthreads)
  end
  local url = "/api/v1/items/" .. item .. "/purchase"
  for _, l in ipairs(common.lines(path, tid, nthreads)) do
    local jwt, tok = l:match("^(%S+) (%S+)$")
    if jwt then
      n = n + 1
      reqs[n] = wrk.format("POST", url, { ["Authorization"] = "Bearer " .. jwt, ["Idempotency-Key"] = tok })
    end
  end
end

function delay()
  if pace then
    return pace()
  end
  return 0
end

function request()
  i = i + 1
  if i <= n then
    return reqs[i]
  end
  -- Out of users: stop the thread. Requests already due still need a
  -- body to send; a GET /healthz replays no token.
  if i == n + 1 then
    wrk.thread:stop()
  end
  return healthz
end

common.install("purchase")
