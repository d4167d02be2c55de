-- prune: remove the consumers of an outbox's group that hold no pending
-- entry and have been idle for a while (relays that restarted under another
-- name), so their number stays bounded. Records: see records.go.
-- KEYS: 1 outbox
-- ARGV: 1 group, 2 least idle time (ms), 3 the caller's own consumer name
-- Returns how many consumers it removed. A consumer with pending entries
-- stays: they are taken over by XAUTOCLAIM first.
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[3] and f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    n = n + 1
  end
end
return n
