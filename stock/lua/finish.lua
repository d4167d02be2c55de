-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- finish: settle a token left in the claimed state by reserve.lua.
-- KEYS: 1 bought, 2 token, 3 open-claims index
-- ARGV: 1 user, 2 order id, 3 result code, 4 '1' to free the user's slot,
--       5 seconds to keep the token's result, 6 claim epoch, 7 claims member
-- Only the claim of this order id and epoch is settled, once: a process
-- whose claim a replay took over settles nothing.
local tok = redis.call('HMGET', KEYS[2], 'st', 'o', 'ct')
if tok[1] ~= 'c' or tok[2] ~= ARGV[2] or tok[3] ~= ARGV[6] then return 0 end
if ARGV[4] == '1' then
  if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[1])
  end
end
redis.call('HSET', KEYS[2], 'st', 'd', 'c', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('ZREM', KEYS[3], ARGV[7])
return 1
