-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- take: fall-through purchase of one unit from a shard that is not the
-- buyer's home shard. The buyer's slot is already claimed on the home shard.
-- Everything it touches lives in this shard's slot group; the order index
-- entry was written by reserve.lua on the home shard with the claim.
-- KEYS: 1 stock, 2 outbox, 3 took marker of this order on this shard,
--       4 set of active outboxes of this shard's group
-- ARGV: 1 user, 2 item, 3 order id, 4 now (ms), 5 this shard, 6 home shard,
--       7 seconds to keep the marker, 8 claim epoch, 9 this outbox's member
-- The marker fences the take with the claim: 't<epoch>' means this claim
-- took its unit here (a retried take is a no-op); 'f<epoch>' means a replay
-- that took the claim over fenced this shard for itself. Any other marker
-- belongs to another epoch of the claim: this caller lost it and takes
-- nothing (code 7).
local m = redis.call('GET', KEYS[3])
if m == 't' .. ARGV[8] then return 0 end
if m and m ~= 'f' .. ARGV[8] then return 7 end
local s = redis.call('GET', KEYS[1])
if not s then return 5 end
if tonumber(s) <= 0 then return 2 end
redis.call('DECR', KEYS[1])
redis.call('XADD', KEYS[2], '*', 'o', ARGV[3], 'i', ARGV[2], 'u', ARGV[1], 's', ARGV[5], 'h', ARGV[6], 't', ARGV[4])
redis.call('SADD', KEYS[4], ARGV[9])
redis.call('SET', KEYS[3], 't' .. ARGV[8], 'EX', ARGV[7])
return 0
