-- hello.lua: the bare-Gin ceiling (bench/ceiling) under wrk, with the same
-- callbacks as soldout.lua (a request() per request, a response() that
-- counts statuses), so both runs cost the load generator the same.
--
--   wrk -t2 -c64 -d10s -s bench/wrk/hello.lua http://127.0.0.1:18081 [-- headers]
--
-- With "headers", every request also carries what a sold-out purchase
-- carries (an Authorization header with a user JWT's length, an
-- Idempotency-Key of a purchase token's): the ceiling for requests of that
-- size, which the server reads and the load generator writes at a cost of
-- their own.
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local req = nil

-- Requests are formatted in init: wrk sets the Host header just before it.
function init(args)
  if args[1] == "headers" then
    local jwt = string.rep("h", 36) .. "." .. string.rep("p", 94) .. "." .. string.rep("s", 43)
    req = wrk.format("GET", "/hello", { ["Authorization"] = "Bearer " .. jwt, ["Idempotency-Key"] = string.rep("0", 99) })
  else
    req = wrk.format("GET", "/hello")
  end
end

function request()
  return req
end

common.install("hello")
