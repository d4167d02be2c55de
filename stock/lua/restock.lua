-- restock: give the unit of a cancelled order back to the shard it was taken
-- from, once per order id whoever calls and however often.
-- KEYS: 1 stock, 2 returned set
-- ARGV: 1 order id
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[1])
return 1
