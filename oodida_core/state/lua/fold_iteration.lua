-- fold_iteration.lua: fold one iteration into the assignment's summary of folded iterations,
-- once: compare-and-set on the last index folded (store.py fold).
--
-- KEYS[1]  hash: the assignment's record (Keys.assignment)
-- KEYS[2]  hash: the assignment's iterations (Keys.iterations)
-- ARGV[1]  the index folded (its entry in KEYS[2] is dropped)
-- ARGV[2]  the summary with it folded in, FoldedIterations JSON
-- ARGV[3]  the last index the caller saw folded ('-1': none), compared with the stored one
--
-- Returns 1 when folded, 0 when someone else changed the summary first or the record is gone
-- (nothing changed).
local last = redis.call('HGET', KEYS[1], 'folded_last') or '-1'
if last ~= ARGV[3] or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local payload = redis.call('HGET', KEYS[2], ARGV[1])
if payload then
  redis.call('HINCRBY', KEYS[1], 'bytes', -string.len(payload))
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('HSET', KEYS[1], 'folded', ARGV[2], 'folded_last', ARGV[1])
return 1
