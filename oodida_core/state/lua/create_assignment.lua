-- create_assignment.lua: record a new assignment as pending, once (store.py create).
--
-- KEYS[1]  hash: the assignment's record (Keys.assignment)
-- KEYS[2]  sorted set: the user's assignment ids (Keys.user_assignments)
-- ARGV[1]  the assignment id
-- ARGV[2]  the user who submitted it
-- ARGV[3]  its spec, as JSON
-- ARGV[4]  now, in seconds (its creation time and its score in KEYS[2])
--
-- Returns 1 when the record was created, 0 when it existed already (nothing changed).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'user', ARGV[2], 'spec', ARGV[3], 'status', 'pending',
           'created_at', ARGV[4], 'done', 0)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
