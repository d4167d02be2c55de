-- page.lua: the product page (GET /api/v1/items/{id}) under wrk, with the
-- same callbacks as hello.lua, so both runs cost the load generator the
-- same; every request views one item, as a crowd waiting for a sale does.
--
--   wrk -t2 -c64 -d6s -s bench/wrk/page.lua http://127.0.0.1:18080 -- ITEM_ID
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local req = nil

-- Requests are formatted in init: wrk sets the Host header just before it.
function init(args)
  req = wrk.format("GET", "/api/v1/items/" .. assert(args[1], "usage: page.lua ITEM_ID"))
end

function request()
  return req
end

common.install("page")
