-- take: fall-through purchase of one unit from a shard that is not the
-- buyer's home shard. The buyer's slot is already claimed on the home shard.
-- KEYS: 1 stock, 2 outbox, 3 took marker of this order on this shard
-- ARGV: 1 user, 2 item, 3 order id, 4 now (ms), 5 this shard, 6 home shard,
--       7 seconds to keep the marker
-- The marker makes a retried take of the same order a no-op.
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local s = redis.call('GET', KEYS[1])
if not s then return 5 end
if tonumber(s) <= 0 then return 2 end
redis.call('DECR', KEYS[1])
redis.call('XADD', KEYS[2], '*', 'o', ARGV[3], 'i', ARGV[2], 'u', ARGV[1], 's', ARGV[5], 'h', ARGV[6], 't', ARGV[4])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[7])
return 0
