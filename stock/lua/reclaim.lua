-- reclaim: take over a stale fall-through claim, for one caller only.
-- KEYS: 1 token
-- ARGV: 1 claim time the caller saw, 2 now (ms)
-- The claim time is compared and replaced in one step, so of several
-- replays of a stale claim exactly one settles it.
local tok = redis.call('HMGET', KEYS[1], 'st', 'ct')
if tok[1] ~= 'c' or tok[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'ct', ARGV[2])
return 1
