-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- answer: the answer of a purchase token once the item is sold out, without
-- taking anything: the stored answer of a used token, or sold out for one
-- used now, its first use (kept, so every instance and every retry answers
-- the same).
-- KEYS: 1 token
-- ARGV: 1 user, 2 seconds to keep the token's result
-- Returns {code, order id, claim time} like reserve.lua.
local tok = redis.call('HMGET', KEYS[1], 'u', 'st', 'c', 'o', 'ct')
if tok[1] and tok[1] ~= ARGV[1] then return {4} end
if tok[2] == 'd' then return {tonumber(tok[3]), tok[4] or '0'} end
if tok[2] == 'c' then return {6, tok[4], tok[5]} end
redis.call('HSET', KEYS[1], 'u', ARGV[1], 'st', 'd', 'c', 2)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {2}
