-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- restock: give the unit of a cancelled order back to the shard it was taken
-- from, once per order id whoever calls and however often.
-- KEYS: 1 stock, 2 returned set
-- ARGV: 1 order id
-- Returns 1 if this call put the unit back, 0 if an earlier one did, and 5
-- if the shard's key is gone (Redis lost it): the unit must not be recorded
-- as returned then, and a rebuild from MySQL counts it.
if redis.call('EXISTS', KEYS[1]) == 0 then return 5 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
-- The guard set outlives the last return by a week, then goes: by then
-- every order of it is marked returned in MySQL and never returned again.
redis.call('EXPIRE', KEYS[2], 604800)
redis.call('INCR', KEYS[1])
return 1
