-- claim_deadlines.lua: hand the deadlines that passed to one caller each, re-arming them
-- later (store.py claim_due_deadlines).
--
-- KEYS[1]  sorted set: the iterations' deadlines (Keys.deadlines)
-- ARGV[1]  now, in seconds: members scored at or before it are due
-- ARGV[2]  the time the due members are re-armed for, in seconds
-- ARGV[3]  at most this many members are claimed
--
-- Returns the due members, earliest first (an empty list when none is due).
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], m) end
return due
