-- record_verdict.lua: one client's verdict on a deployment, in a key of its own (a vehicle's
-- ACL user writes only its own), and an event (codestore.py record_verdict).
--
-- KEYS[1]  string: the client's verdict on the deployment (Keys.deployment_verdict)
-- KEYS[2]  stream: the deployment's events (Keys.deployment_events)
-- ARGV[1]  the verdict, Verdict JSON
-- ARGV[2]  the client's id
-- ARGV[3]  seconds the verdict and the events live
--
-- Returns 1 (the verdict written, replacing an earlier one; a 'verdict' event added).
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'type', 'verdict', 'client', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
