-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- reclaim: take over a stale fall-through claim, for one caller only.
-- KEYS: 1 token, 2 open-claims index
-- ARGV: 1 claim time (epoch) the caller saw, 2 now (ms): the new epoch,
--       3 claims member
-- The epoch is compared and replaced in one step, so of several replays of
-- a stale claim exactly one settles it, and the process that held the old
-- epoch can no longer take (take.lua) or settle (finish.lua).
local tok = redis.call('HMGET', KEYS[1], 'st', 'ct')
if tok[1] ~= 'c' or tok[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'ct', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
