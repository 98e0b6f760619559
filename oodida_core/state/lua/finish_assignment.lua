-- finish_assignment.lua: end an assignment once, with its final status (store.py finish).
--
-- KEYS[1]  hash: the assignment's record (Keys.assignment)
-- KEYS[2]  hash: the assignment's iterations (Keys.iterations), which expire with it
-- KEYS[3]  stream: the assignment's events (Keys.events)
-- KEYS[4]  sorted set: the iterations' deadlines (Keys.deadlines)
-- KEYS[5]  string: the assignment's end marker, what a vehicle reads (Keys.assignment_ended)
-- ARGV[1]  the final status: done, failed or cancelled
-- ARGV[2]  now, in seconds
-- ARGV[3]  seconds the assignment's keys live from now
-- ARGV[4]  the error ('': none)
-- ARGV[5]  the spec's issues, JSON ('': none)
-- ARGV[6]  the assignment id (its members of KEYS[4] are '<id>:<index>')
-- ARGV[7]  '1': add the 'end' event now; '0': the caller adds it later
-- ARGV[8]  the quota that ended it ('': none)
--
-- Returns the index of the iteration that was current, -1 when none was (it was pending),
-- -2 when there is no such assignment or it had ended (nothing changed).
local st = redis.call('HGET', KEYS[1], 'status')
if not st or st == 'done' or st == 'failed' or st == 'cancelled' then return -2 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error_issues', ARGV[5]) end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'limit', ARGV[8]) end
local current = redis.call('HGET', KEYS[1], 'current')
if current then redis.call('ZREM', KEYS[4], ARGV[6] .. ':' .. current) end
if ARGV[7] == '1' then redis.call('XADD', KEYS[3], '*', 'type', 'end', 'status', ARGV[1]) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
redis.call('SET', KEYS[5], ARGV[1], 'EX', ARGV[3])
return tonumber(current or -1)
