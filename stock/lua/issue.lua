-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- issue: a new purchase token: the buyer's, unused, valid for a while.
-- One script rather than MULTI/HSET/EXPIRE/EXEC, so that token issues go
-- through the group commit of purchase scripts (batch.go) and a token
-- never exists without its expiry.
-- KEYS: 1 token, 2 the home shard's sale state (control.go)
-- ARGV: 1 user, 2 validity (ms)
-- Returns {code}: 0 issued, 8 paused, 9 ended by the operator.
local st = redis.call('GET', KEYS[2])
if st == 'p' then return {8} end
if st == 'e' then return {9} end
redis.call('HSET', KEYS[1], 'u', ARGV[1], 'st', 'n')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {0}
