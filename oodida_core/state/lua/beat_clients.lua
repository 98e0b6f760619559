-- beat_clients.lua: one heartbeat for each of n clients, a whole fleet in one call
-- (registry.py beat).
--
-- KEYS[1..n]     strings: the clients' heartbeats (Keys.client_seen)
-- KEYS[n+1..2n]  strings: the same clients' info, in the same order (Keys.client_info)
-- ARGV[1]  now, in seconds: each heartbeat's value
-- ARGV[2]  milliseconds each heartbeat lives (the live window)
--
-- Returns the positions (1-based, in KEYS[1..n]) of the clients whose info is gone, in order
-- (an empty list when every client's info exists); an error for more than 10,000 clients (a
-- vehicle may run this script: without a bound, millions of keys held Redis for seconds).
if #KEYS > 20000 then return redis.error_reply('at most 10000 clients per heartbeat') end
local n = #KEYS / 2
local lost = {}
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
  if redis.call('EXISTS', KEYS[n + i]) == 0 then lost[#lost + 1] = i end
end
return lost
