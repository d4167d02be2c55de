-- token.lua: purchase token issues under wrk, as fast as the connections
-- go. Requests cycle over a pool of users ("<jwt> <token>" lines from
-- bench/cmd/prep) whose JWTs the service has seen, as a crowd that loads
-- the page, fetches a token and buys does: what is measured is the token
-- issue, not a first JWT verification. Every answer should be 201.
--
--   wrk -t2 -c64 -d10s -s bench/wrk/token.lua http://127.0.0.1:18080 -- users.txt ITEM THREADS
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local pool = 1000 -- users per thread; each asks many times
local reqs, n, i = {}, 0, 0

function init(args)
  local path, item, nthreads = args[1], args[2], tonumber(args[3] or "1")
  local url = "/api/v1/items/" .. item .. "/tokens"
  for _, l in ipairs(common.lines(path, tid, nthreads)) do
    local jwt = l:match("^(%S+) ")
    if jwt then
      n = n + 1
      reqs[n] = wrk.format("POST", url, { ["Authorization"] = "Bearer " .. jwt })
      if n >= pool then
        break
      end
    end
  end
  assert(n > 0, "token.lua: no users in " .. path)
end

function request()
  i = i % n + 1
  return reqs[i]
end

common.install("token")
