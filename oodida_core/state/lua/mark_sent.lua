-- mark_sent.lua: record that an iteration's chord was published; the mark only grows
-- (store.py mark_sent).
--
-- KEYS[1]  hash: the assignment's record (Keys.assignment)
-- ARGV[1]  the index of the iteration published
--
-- Returns 1 when the record exists (its 'sent' is now at least ARGV[1]), 0 when it does not
-- (nothing changed).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local sent = tonumber(redis.call('HGET', KEYS[1], 'sent') or '-1')
if tonumber(ARGV[1]) > sent then redis.call('HSET', KEYS[1], 'sent', ARGV[1]) end
return 1
