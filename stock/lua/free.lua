-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- free: release the buyer's per-user slot on their home shard for a cancelled
-- order, once per order id.
-- KEYS: 1 bought, 2 freed set
-- ARGV: 1 user, 2 order id
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[2], 604800) -- a week after the last free, as restock.lua
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
