-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- retake: put back, on the buyer's home shard, what a Redis restart lost of
-- an accepted purchase (its writes were in the last second an AOF with
-- appendfsync everysec had not synced): the buyer's slot and the token's
-- answer. The unit is taken again by take.lua, and the order index entry
-- is written after that (it is what tells a finished retake).
-- KEYS: 1 bought, 2 token, 3 order index entry
-- ARGV: 1 user, 2 order id, 3 seconds to keep the token
-- Returns 0 if the purchase was not lost after all (its index is there),
-- 2 if an earlier retake already put the slot back (it stopped before the
-- index), else 1.
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local tok = redis.call('HMGET', KEYS[2], 'st', 'c', 'o')
if tok[1] == 'd' and tok[2] == '0' and tok[3] == ARGV[2] then return 2 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[2], 'u', ARGV[1], 'st', 'd', 'c', 0, 'o', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
