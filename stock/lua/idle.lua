-- Record formats (token hash, outbox entry, order index, claims): see records.go.
-- idle: forget an outbox in the set of active ones once it holds nothing
-- (no new entry, none waiting for MySQL). The scripts that append to an
-- outbox add it back in the same step, so no entry is ever missed.
-- KEYS: 1 outbox, 2 set of active outboxes
-- ARGV: 1 the outbox's member
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
return 0
