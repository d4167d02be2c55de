-- soldout.lua: the sold-out path under wrk, as fast as the connections go.
-- Requests cycle over a pool of users holding purchase tokens for the
-- sold-out item ("<jwt> <token>" lines from bench/cmd/prep, run before the
-- item sold out or on an item with no stock). Every answer should be 409
-- sold_out, from the instance's sold-out flag without a Redis call. Real
-- tokens matter: the flag is re-learned (after the instance forgets it, as
-- it does every 30s) only by a purchase with a valid unused token.
--
--   wrk -t2 -c64 -d10s -s bench/wrk/soldout.lua http://127.0.0.1:18080 -- users.txt ITEM THREADS
--
-- The same wrk settings run bench/wrk/hello.lua against bench/ceiling.
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local pool = 1000 -- users per thread; each sends many requests
local reqs, n, i = {}, 0, 0

function init(args)
  local path, item, nthreads = args[1], args[2], tonumber(args[3] or "1")
  local url = "/api/v1/items/" .. item .. "/purchase"
  for _, l in ipairs(common.lines(path, tid, nthreads)) do
    local jwt, tok = l:match("^(%S+) (%S+)$")
    if jwt then
      n = n + 1
      reqs[n] = wrk.format("POST", url, { ["Authorization"] = "Bearer " .. jwt, ["Idempotency-Key"] = tok })
      if n >= pool then
        break
      end
    end
  end
  assert(n > 0, "soldout.lua: no users in " .. path)
end

function request()
  i = i % n + 1
  return reqs[i]
end

common.install("soldout")
