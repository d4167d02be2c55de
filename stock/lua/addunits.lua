-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- addunits: add an operator's units to one shard of a running sale, once
-- per stock addition whoever calls and however often (a retried request, a
-- second instance finishing it).
-- KEYS: 1 stock, 2 added set (ids of the additions applied to this shard)
-- ARGV: 1 addition id, 2 units for this shard
-- Returns 1 if this call added the units, 0 if an earlier one did, and 5 if
-- the shard's key is gone (Redis lost it): nothing is added then, and the
-- rebuild from MySQL counts the addition (items.stock already holds it).
if redis.call('EXISTS', KEYS[1]) == 0 then return 5 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
-- INCRBY in the same script as the guard: a purchase's DECR on this shard
-- runs before or after it, never between, so no unit is counted twice.
redis.call('INCRBY', KEYS[1], ARGV[2])
return 1
