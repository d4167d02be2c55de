-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- fence: a replay that took over a stale claim shuts the claim's earlier
-- epochs out of one shard before it decides anything.
-- KEYS: 1 took marker of the order on this shard
-- ARGV: 1 the replay's epoch, 2 seconds to keep the marker
-- Returns '' if the shard is now fenced for the replay, or the marker found
-- ('t<epoch>': some epoch of the claim took its unit here). The fence of an
-- earlier replay ('f<epoch>') is replaced: that replay lost the claim to
-- this one (reclaim.lua moved the epoch), and a replay that died after
-- fencing must not leave the claim unsettleable.
local m = redis.call('GET', KEYS[1])
if m and string.sub(m, 1, 1) == 't' then return m end
redis.call('SET', KEYS[1], 'f' .. ARGV[1], 'EX', ARGV[2])
return ''
