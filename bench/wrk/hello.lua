-- hello.lua: the bare-Gin ceiling (bench/ceiling) under wrk, with the same
-- callbacks as soldout.lua (a request() per request, a response() that
-- counts statuses), so both runs cost the load generator the same.
--
--   wrk -t2 -c64 -d10s -s bench/wrk/hello.lua http://127.0.0.1:18081
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local req = nil

-- Requests are formatted in init: wrk sets the Host header just before it.
function init(args)
  req = wrk.format("GET", "/hello")
end

function request()
  return req
end

common.install("hello")
