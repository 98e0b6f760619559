-- point_onboard.lua: make a version the head of a user's on-board pointer on one client, by
-- the client that installed it; only that pointer: the deployment's time is the cloud's,
-- recorded when it sends the installs (codestore.py point_onboard).
--
-- KEYS[1]  list: the user's on-board versions on the client, newest first (Keys.onboard_pointer)
-- ARGV[1]  the version
-- ARGV[2]  how many versions the pointer keeps
--
-- Returns 1 (the version is the head, pushed unless it was already).
local head = redis.call('LINDEX', KEYS[1], 0)
if head ~= ARGV[1] then
  redis.call('LPUSH', KEYS[1], ARGV[1])
  redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
return 1
