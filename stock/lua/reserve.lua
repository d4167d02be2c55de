-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- reserve: the whole common-case purchase in one atomic call on the user's
-- home shard. Everything it touches lives in the home shard's slot group
-- (one Redis Cluster slot): the shard's keys, the group's open-claims index
-- and active-outbox set, and the order index entry (the order id is made
-- for this group).
-- KEYS: 1 stock, 2 bought, 3 token, 4 outbox, 5 open-claims index,
--       6 order index entry of the order id, 7 set of active outboxes,
--       8 the shard's sale state (control.go: absent on sale, 'p' paused,
--       'e' ended by the operator)
-- ARGV: 1 user, 2 item, 3 order id, 4 per-user limit, 5 now (ms), 6 shard,
--       7 seconds to keep the token's result for replays, 8 claims member,
--       9 order index value (item:home:token:ms), 10 this outbox's member
-- Returns {code, order id, claim time}; codes are mapped in stock.go.
-- The token was verified in process (its MAC, user, item and expiry); its
-- hash exists only once it was used: missing means first use.
local tok = redis.call('HMGET', KEYS[3], 'u', 'st', 'c', 'o', 'ct')
-- A stored answer of another user is not this buyer's (a token's ID is
-- random and signed, so only a forgery could get here).
if tok[1] and tok[1] ~= ARGV[1] then return {4} end
-- Replay: the stored answer, whatever it was.
if tok[2] == 'd' then return {tonumber(tok[3]), tok[4] or '0'} end
if tok[2] == 'c' then return {6, tok[4], tok[5]} end
-- The operator's pause or end, read in the same call that would take the
-- unit: once every shard carries the flag, no new purchase passes anywhere.
local st = redis.call('GET', KEYS[8])
if st == 'p' then return {8} end
if st == 'e' then return {9} end
local s = redis.call('GET', KEYS[1])
if not s then return {5} end
-- The user's slot is counted here, on the home shard, before any unit is
-- taken anywhere: that is what keeps the per-user limit across shards.
-- Counted first and taken back when over the limit: one call, not a read
-- and a write, in the common case.
if redis.call('HINCRBY', KEYS[2], ARGV[1], 1) > tonumber(ARGV[4]) then
  redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
  redis.call('HSET', KEYS[3], 'u', ARGV[1], 'st', 'd', 'c', 3)
  redis.call('EXPIRE', KEYS[3], ARGV[7])
  return {3}
end
if tonumber(s) <= 0 then
  -- Home shard empty: keep the slot claimed while the caller tries the other
  -- shards; finish.lua settles the token (and frees the slot if all are empty).
  -- The claim time is also the claim's epoch: every take is fenced with it.
  redis.call('HSET', KEYS[3], 'u', ARGV[1], 'st', 'c', 'o', ARGV[3], 'ct', ARGV[5])
  redis.call('EXPIRE', KEYS[3], ARGV[7])
  -- Indexed, so the sweeper settles a claim its buyer abandoned and a
  -- rebuild counts the slot it holds.
  redis.call('ZADD', KEYS[5], ARGV[5], ARGV[8])
  -- Indexed now, in this slot: the take happens on another shard, in
  -- another slot, and the buyer reads the order as pending meanwhile.
  redis.call('SET', KEYS[6], ARGV[9], 'EX', ARGV[7])
  return {1, ARGV[3], ARGV[5]}
end
-- Stock check and decrement in the same call: no check-then-act gap.
redis.call('DECR', KEYS[1])
redis.call('XADD', KEYS[4], '*', 'o', ARGV[3], 'i', ARGV[2], 'u', ARGV[1], 's', ARGV[6], 'h', ARGV[6], 't', ARGV[5])
-- The relay visits only outboxes with something in them.
redis.call('SADD', KEYS[7], ARGV[10])
redis.call('HSET', KEYS[3], 'u', ARGV[1], 'st', 'd', 'c', 0, 'o', ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[7])
-- The order is found by its id alone (index -> token -> answer).
redis.call('SET', KEYS[6], ARGV[9], 'EX', ARGV[7])
return {0, ARGV[3]}
