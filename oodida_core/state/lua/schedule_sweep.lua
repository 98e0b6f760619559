-- schedule_sweep.lua: schedule a purged assignment's second sweep, the set of sweeps living
-- at least as long as asked (sweeps.py schedule).
--
-- KEYS[1]  sorted set: the sweeps, member -> when it is due (Keys.purge_sweeps)
-- ARGV[1]  when the sweep is due, in seconds
-- ARGV[2]  the member: the assignment and what names its Celery keys (keys.sweep_member)
-- ARGV[3]  seconds the set lives from now at least (its lifetime only grows)
--
-- Returns the seconds the set lives from now.
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('TTL', KEYS[1])
if ttl < tonumber(ARGV[3]) then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return tonumber(ARGV[3])
end
return ttl
