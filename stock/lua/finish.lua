-- finish: settle a token left in the claimed state by reserve.lua.
-- KEYS: 1 bought, 2 token
-- ARGV: 1 user, 2 order id, 3 result code, 4 '1' to free the user's slot,
--       5 seconds to keep the token's result
-- Only the claim of this order id is settled, once.
local tok = redis.call('HMGET', KEYS[2], 'st', 'o')
if tok[1] ~= 'c' or tok[2] ~= ARGV[2] then return 0 end
if ARGV[4] == '1' then
  if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[1])
  end
end
redis.call('HSET', KEYS[2], 'st', 'd', 'c', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
