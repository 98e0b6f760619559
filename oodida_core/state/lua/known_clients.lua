-- known_clients.lua: the indexed client ids whose info key exists, in one call
-- (registry.py known).
--
-- KEYS[1]  set: the client index (Keys.client_index)
-- ARGV[1]  the info key's name before the id (Keys.client_info)
-- ARGV[2]  the info key's name after the id
--
-- Returns the ids (strings) whose info key exists, in SMEMBERS order (an empty list when
-- none does).
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. id .. ARGV[2]) == 1 then out[#out + 1] = id end
end
return out
