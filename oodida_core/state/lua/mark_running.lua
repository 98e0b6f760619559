-- mark_running.lua: move a pending assignment to running, with its clients and the deadline
-- of its first iteration (store.py mark_running).
--
-- KEYS[1]  hash: the assignment's record (Keys.assignment)
-- KEYS[2]  sorted set: the iterations' deadlines (Keys.deadlines)
-- KEYS[3]  stream: the assignment's events (Keys.events)
-- ARGV[1]  its clients, a JSON list of ids
-- ARGV[2]  now, in seconds
-- ARGV[3]  the first iteration's deadline, in seconds
-- ARGV[4]  the first iteration's member of KEYS[2] (keys.deadline_member)
-- ARGV[5]  the validated spec, as JSON (replaces the submitted one)
-- ARGV[6]  the user asking: the record's owner
--
-- Returns 1 when it is running now (an 'accepted' event added), 0 when it was not pending,
-- -1 when there is no such assignment, -2 when it belongs to another user (nothing changed).
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if redis.call('HGET', KEYS[1], 'user') ~= ARGV[6] then return -2 end
if st ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2], 'clients', ARGV[1],
           'current', 0, 'current_started', ARGV[2], 'spec', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('XADD', KEYS[3], '*', 'type', 'accepted')
return 1
