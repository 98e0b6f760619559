-- rollback_pointer.lua: drop the head of a code pointer (codestore.py rollback_onboard,
-- rollback_offboard).
--
-- KEYS[1]  list: a pointer's versions, newest first (Keys.onboard_pointer, Keys.offboard_pointer)
-- ARGV     none
--
-- Returns {1, the version now current} after dropping the head ({1, nil} when the pointer
-- is now empty), {0, nil} when the pointer was empty (nothing changed).
if redis.call('LLEN', KEYS[1]) == 0 then return {0, false} end
redis.call('LPOP', KEYS[1])
return {1, redis.call('LINDEX', KEYS[1], 0)}
