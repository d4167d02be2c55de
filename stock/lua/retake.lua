-- retake: put back, on the buyer's home shard, what a Redis restart lost of
-- an accepted purchase (its writes were in the last second an AOF with
-- appendfsync everysec had not synced): the buyer's slot, the token's
-- answer and the order index. The unit is taken again by take.lua.
-- KEYS: 1 bought, 2 token, 3 order index entry
-- ARGV: 1 user, 2 order id, 3 seconds to keep, 4 index value
-- Returns 0 if the purchase was not lost after all (its index is there).
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[2], 'u', ARGV[1], 'st', 'd', 'c', 0, 'o', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
