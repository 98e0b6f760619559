-- claim_redispatch.lua: take the job of publishing again the chord of an iteration that was
-- planned but never published, for one caller, a bounded number of times
-- (store.py claim_redispatch).
--
-- KEYS[1]  hash: the assignment's record (Keys.assignment)
-- KEYS[2]  sorted set: the iterations' deadlines (Keys.deadlines)
-- ARGV[1]  the iteration's index
-- ARGV[2]  its new deadline, in seconds
-- ARGV[3]  now, in seconds
-- ARGV[4]  how many times it may be claimed
-- ARGV[5]  the assignment id (its members of KEYS[2] are '<id>:<index>')
--
-- Returns 1 for the caller that publishes it (the attempt counted, its deadline moved),
-- 0 when there is nothing to do (not running, not the current iteration, or already sent),
-- -1 when it was claimed ARGV[4] times already (nothing changed).
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'current')) ~= tonumber(ARGV[1]) then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'sent') or '-1') >= tonumber(ARGV[1]) then return 0 end
local tries = 1
local last = redis.call('HGET', KEYS[1], 'resent')
if last then
  local idx, n = string.match(last, '^(%d+):(%d+)$')
  if idx == ARGV[1] then tries = tonumber(n) + 1 end
end
if tries > tonumber(ARGV[4]) then return -1 end
redis.call('HSET', KEYS[1], 'resent', ARGV[1] .. ':' .. tries, 'current_started', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5] .. ':' .. ARGV[1])
return 1
