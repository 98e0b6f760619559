-- complete_iteration.lua: store an iteration's result once and, in the same step, move the
-- assignment on: to its next iteration, or to done, or to failed (store.py complete_iteration).
--
-- KEYS[1]  hash: the assignment's iterations, index -> IterationResult JSON (Keys.iterations)
-- KEYS[2]  hash: the assignment's record (Keys.assignment)
-- KEYS[3]  stream: the assignment's events (Keys.events)
-- KEYS[4]  sorted set: the iterations' deadlines (Keys.deadlines)
-- KEYS[5]  string: the assignment's end marker, what a vehicle reads (Keys.assignment_ended)
-- ARGV[1]  the iteration's index
-- ARGV[2]  its result, IterationResult JSON
-- ARGV[3]  seconds the assignment's keys live once it ended
-- ARGV[4]  the next iteration's deadline in seconds ('': that was the last iteration)
-- ARGV[5]  now, in seconds
-- ARGV[6]  the assignment id (its members of KEYS[4] are '<id>:<index>')
-- ARGV[7]  '1' when the iteration failed, '0' otherwise
-- ARGV[8]  the error the record holds when every iteration failed
--
-- Returns 0 when the iteration was stored already (nothing changed); otherwise it is stored
-- and: 1 when the next iteration is current (its deadline armed), 2 when that was the last
-- iteration (done), 4 when that was the last and every iteration failed (failed), 3 when the
-- iteration is not the current one of a running assignment (cancelled, ended or stale).
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'done', 1)
redis.call('HINCRBY', KEYS[2], 'bytes', string.len(ARGV[2]))
if ARGV[7] == '1' then redis.call('HINCRBY', KEYS[2], 'failed_iterations', 1) end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'type', 'iteration', 'index', ARGV[1])
local st = redis.call('HGET', KEYS[2], 'status')
local idx = tonumber(ARGV[1])
if st ~= 'running' or tonumber(redis.call('HGET', KEYS[2], 'current')) ~= idx then
  if st == 'done' or st == 'failed' or st == 'cancelled' then
    for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
  end
  return 3
end
redis.call('ZREM', KEYS[4], ARGV[6] .. ':' .. ARGV[1])
if ARGV[4] == '' then
  local ended, code = 'done', 2
  if tonumber(redis.call('HGET', KEYS[2], 'failed_iterations') or '0') >=
     tonumber(redis.call('HGET', KEYS[2], 'done')) then
    ended, code = 'failed', 4
    redis.call('HSET', KEYS[2], 'error', ARGV[8])
  end
  redis.call('HSET', KEYS[2], 'status', ended, 'finished_at', ARGV[5])
  redis.call('XADD', KEYS[3], '*', 'type', 'end', 'status', ended)
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
  redis.call('SET', KEYS[5], ended, 'EX', ARGV[3])
  return code
end
redis.call('HSET', KEYS[2], 'current', idx + 1, 'current_started', ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[6] .. ':' .. (idx + 1))
return 1
