-- point_offboard.lua: make a version the head of a user's off-board pointer and record when
-- it was deployed (codestore.py point_offboard).
--
-- KEYS[1]  list: the user's off-board versions, newest first (Keys.offboard_pointer)
-- KEYS[2]  hash: version -> time of the user's latest deployment of it (Keys.deployed_at)
-- ARGV[1]  the version
-- ARGV[2]  now, in seconds
-- ARGV[3]  how many versions the pointer keeps
--
-- Returns 1 (the version is the head, pushed unless it was already; its time recorded).
local head = redis.call('LINDEX', KEYS[1], 0)
if head ~= ARGV[1] then
  redis.call('LPUSH', KEYS[1], ARGV[1])
  redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[3]) - 1)
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
