-- admit_slot.lua: take one of a user's bounded slots (quota.py): a running assignment
-- (Keys.running) or a pending deployment (Keys.deploying).
--
-- KEYS[1]  sorted set: the user's slots, member -> time it was admitted
-- ARGV[1]  member: the assignment or deployment id asking for a slot
-- ARGV[2]  now, in seconds
-- ARGV[3]  limit: how many members the set may hold
-- ARGV[4]  members admitted before this time are dropped first (0: none are)
-- ARGV[5]  seconds the set lives after this change (0: it does not expire)
--
-- Returns 1 when the member holds a slot (it held one already, or it took a free one),
-- 0 when every slot is taken (nothing changed).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
return 1
