"""The queue's state transitions, as Lua scripts run atomically inside Redis.

Every move of a task between states (queued -> running -> done / failed, or back
to queued) touches several keys at once: the pending ZSET, the lease ZSET, the
batch's state sets, the task hash and the result hash. Doing each move in one
script means no crash of a worker, and no race between two workers, can leave a
task in two states or in none. Time is the Redis server's (`TIME`), so leases do
not depend on the workers' clocks agreeing.

Key layout under a prefix `p` (a task's `ref` is "batch:id"):

    p:pending            ZSET  ref -> score (-priority * 2^40 + sequence): ZRANGE 0 0 is next
    p:leases             ZSET  ref -> lease deadline (ms, server clock)
    p:dead               ZSET  ref -> time it was dead-lettered
    p:task:{ref}         HASH  id, batch, spec, meta, priority, score, max_attempts, attempts,
                               state, worker, enqueued_at, started_at, last_error,
                               timeout_ms (execution deadline of one attempt; 0: none);
                               once finished only id, batch, state, attempts, worker, last_error
    p:result:{ref}       HASH  the one result (TaskResult fields; empty ones left out)
    p:batch:{b}          HASH  created_at, total, cancelled, first_started_at, last_finished_at
    p:batch:{b}:{state}  SET   refs per state (tasks, queued, running, done, failed, cancelled)
    p:batch:{b}:events   LIST  task ids as they reach a terminal state (a wake-up, not the truth)
    p:batches            ZSET  batch -> created_at
    p:finished:{minute}  HASH  ok:{s} / failed:{s} -> tasks that ended in second s (0-59) of that
                               minute (unix minute); expires 15 min after the minute (throughput,
                               failure rate): bounded by the window's seconds, not by the task rate
    p:counters           HASH  done, failed, retried (totals since the queue was created)
    p:workers            ZSET  worker id -> last heartbeat (dropped after 10 min);  p:worker:{id} HASH (expires)
    p:wake               LIST  tokens pushed on enqueue/requeue; idle workers BLPOP it
    p:wake:{worker}      LIST  a token that ends that worker's idle BLPOP when it is told to stop (expires)
    p:seq                STRING FIFO sequence number
    p:config             HASH  retention_ms: how long a finished batch's keys live (set by workers)

Once every task of a batch has ended, all its keys (tasks, results, sets, events)
get a TTL of the retention; re-opening the batch removes it. Indexes that outlive
them (p:batches, p:dead) are cleaned by `lifecycle.purge`.

Numbers that go back into Redis are formatted with '%.0f': Lua's default
number-to-string keeps 14 significant digits, which would round a score.
"""

from __future__ import annotations

PRELUDE = r"""
local p = ARGV[1]
local function fmt(x) return string.format('%.0f', x) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function tkey(ref) return p .. ':task:' .. ref end
local function rkey(ref) return p .. ':result:' .. ref end
local function bkey(batch, what) return p .. ':batch:' .. batch .. ':' .. what end
local function wake(n)
  for _ = 1, math.min(n, 64) do redis.call('LPUSH', p .. ':wake', '1') end
  redis.call('LTRIM', p .. ':wake', 0, 255)
end

-- Once every task of a batch has ended, its keys expire after the queue's retention
-- (p:config retention_ms, 7 days unless a worker was started with another; 0 keeps them).
local BATCH_SETS = {'tasks', 'queued', 'running', 'done', 'failed', 'cancelled', 'events'}
local function expire_if_complete(batch)
  local bk = p .. ':batch:' .. batch
  local total = tonumber(redis.call('HGET', bk, 'total') or '0')
  local ended = redis.call('SCARD', bkey(batch, 'done')) + redis.call('SCARD', bkey(batch, 'failed'))
    + redis.call('SCARD', bkey(batch, 'cancelled'))
  if total == 0 or ended < total then return end
  local ms = tonumber(redis.call('HGET', p .. ':config', 'retention_ms') or '604800000')
  if ms <= 0 then return end
  for _, ref in ipairs(redis.call('SMEMBERS', bkey(batch, 'tasks'))) do
    redis.call('PEXPIRE', tkey(ref), ms)
    redis.call('PEXPIRE', rkey(ref), ms)
  end
  for _, what in ipairs(BATCH_SETS) do redis.call('PEXPIRE', bkey(batch, what), ms) end
  redis.call('PEXPIRE', bk, ms)
end

-- The throughput window (stats.WINDOW_MS): one counter per second, in one hash per minute that
-- expires once the minute has left the window. At most 120 small fields per hash, so Redis keeps
-- it as a listpack: the window costs a few KB at any rate (one ZSET entry per task held ~100 B each).
local WINDOW_MS = 900000
local function count_finish(kind, now)
  local second = math.floor(now / 1000)
  local minute = math.floor(second / 60)
  local key = p .. ':finished:' .. fmt(minute)
  redis.call('HINCRBY', key, kind .. ':' .. fmt(second % 60), 1)
  redis.call('PEXPIREAT', key, fmt((minute + 1) * 60000 + WINDOW_MS))
end

local function persist_batch(batch)
  local bk = p .. ':batch:' .. batch
  if redis.call('PTTL', bk) < 0 then return end
  for _, ref in ipairs(redis.call('SMEMBERS', bkey(batch, 'tasks'))) do
    redis.call('PERSIST', tkey(ref))
    redis.call('PERSIST', rkey(ref))
  end
  for _, what in ipairs(BATCH_SETS) do redis.call('PERSIST', bkey(batch, what)) end
  redis.call('PERSIST', bk)
end

local function finish(ref, status, now, fields)
  local tk = tkey(ref)
  local batch = redis.call('HGET', tk, 'batch')
  local state = 'failed'
  if status == 'succeeded' then state = 'done' end
  redis.call('ZREM', p .. ':leases', ref)
  redis.call('ZREM', p .. ':pending', ref)
  redis.call('SREM', bkey(batch, 'queued'), ref)
  redis.call('SREM', bkey(batch, 'running'), ref)
  redis.call('SADD', bkey(batch, state), ref)
  redis.call('HSET', tk, 'state', state)
  local t = redis.call('HMGET', tk, 'id', 'attempts', 'worker', 'enqueued_at', 'started_at', 'meta')
  -- Compaction: a finished task is never claimed again, so what only a claim needs goes (the
  -- spec, the bulk of it, and the scheduling fields); meta and the times move to the result,
  -- which also leaves out empty fields (TaskResult.from_hash defaults them). The task keeps
  -- id, batch, state, attempts, worker and last_error. A re-run (--retry-failed) enqueues afresh.
  redis.call('HDEL', tk, 'spec', 'meta', 'priority', 'max_attempts', 'score', 'timeout_ms',
    'enqueued_at', 'started_at', 'finished_at')
  redis.call('DEL', rkey(ref))
  local record = {'task_id', t[1], 'batch', batch, 'status', status, 'attempts', t[2],
    'enqueued_at', t[4], 'finished_at', fmt(now)}
  local optional = {'worker', t[3], 'started_at', t[5], 'meta', t[6], unpack(fields)}
  for k = 1, #optional, 2 do
    local v = optional[k + 1]
    if v and v ~= '' and v ~= '{}' then
      record[#record + 1] = optional[k]
      record[#record + 1] = v
    end
  end
  redis.call('HSET', rkey(ref), unpack(record))
  redis.call('RPUSH', bkey(batch, 'events'), t[1])
  if state == 'failed' then
    redis.call('ZADD', p .. ':dead', fmt(now), ref)
    count_finish('failed', now)
  else
    count_finish('ok', now)
  end
  redis.call('HINCRBY', p .. ':counters', state, 1)
  redis.call('HSET', p .. ':batch:' .. batch, 'last_finished_at', fmt(now))
  expire_if_complete(batch)
end

local function cancel_one(ref, batch)
  redis.call('ZREM', p .. ':pending', ref)
  redis.call('ZREM', p .. ':leases', ref)
  redis.call('SREM', bkey(batch, 'queued'), ref)
  redis.call('SREM', bkey(batch, 'running'), ref)
  redis.call('SADD', bkey(batch, 'cancelled'), ref)
  redis.call('HSET', tkey(ref), 'state', 'cancelled')
end

local function requeue(ref, err, count_retry)
  local tk = tkey(ref)
  local batch = redis.call('HGET', tk, 'batch')
  if err then redis.call('HSET', tk, 'last_error', err) end
  if redis.call('HGET', p .. ':batch:' .. batch, 'cancelled') == '1' then
    cancel_one(ref, batch)
    return 'cancelled'
  end
  redis.call('ZREM', p .. ':leases', ref)
  redis.call('ZADD', p .. ':pending', redis.call('HGET', tk, 'score'), ref)
  redis.call('SREM', bkey(batch, 'running'), ref)
  redis.call('SADD', bkey(batch, 'queued'), ref)
  redis.call('HSET', tk, 'state', 'queued')
  if count_retry then redis.call('HINCRBY', p .. ':counters', 'retried', 1) end
  wake(1)
  return 'requeued'
end

local function reap(now, limit)
  local expired = redis.call('ZRANGEBYSCORE', p .. ':leases', '-inf', fmt(now), 'LIMIT', 0, limit)
  for _, ref in ipairs(expired) do
    local f = redis.call('HMGET', tkey(ref), 'attempts', 'max_attempts', 'worker', 'state')
    if f[4] ~= 'running' then
      redis.call('ZREM', p .. ':leases', ref)
    else
      local err = 'lease expired: worker ' .. (f[3] or '?') .. ' stopped renewing it (attempt ' .. f[1] .. ')'
      if tonumber(f[1]) >= tonumber(f[2]) then
        finish(ref, 'failed', now, {'error', err})
      else
        requeue(ref, err, true)
      end
    end
  end
  return #expired
end
"""

# ARGV: prefix, batch, retry_failed ('1'/'0'), then (id, priority, max_attempts, spec_json, meta_json,
# timeout_ms) per task. A dead-lettered task keeps its verdict unless retry_failed; a cancelled one is re-queued.
ENQUEUE = (
    PRELUDE
    + r"""
local now = now_ms()
local b = ARGV[2]
local bk = p .. ':batch:' .. b
redis.call('HSETNX', bk, 'created_at', fmt(now))
redis.call('HSET', bk, 'cancelled', '0')
redis.call('ZADD', p .. ':batches', 'NX', fmt(now), b)
local added = 0
local retry_failed = ARGV[3] == '1'
local i = 4
while i <= #ARGV do
  local id, prio, maxa, spec, meta, tmo = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  i = i + 6
  local ref = b .. ':' .. id
  local tk = tkey(ref)
  local state = redis.call('HGET', tk, 'state')
  if (not state) or state == 'cancelled' or (state == 'failed' and retry_failed) then
    if state then
      redis.call('SREM', bkey(b, state), ref)
      redis.call('ZREM', p .. ':dead', ref)
      redis.call('DEL', rkey(ref))
    end
    local seq = redis.call('INCR', p .. ':seq')
    local score = fmt(-tonumber(prio) * 1099511627776 + seq)
    redis.call('DEL', tk)
    redis.call('HSET', tk, 'id', id, 'batch', b, 'spec', spec, 'priority', prio, 'max_attempts', maxa,
      'meta', meta, 'attempts', '0', 'state', 'queued', 'enqueued_at', fmt(now), 'score', score, 'timeout_ms', tmo)
    redis.call('ZADD', p .. ':pending', score, ref)
    redis.call('SADD', bkey(b, 'tasks'), ref)
    redis.call('SADD', bkey(b, 'queued'), ref)
    added = added + 1
  end
end
redis.call('HSET', bk, 'total', redis.call('SCARD', bkey(b, 'tasks')))
if added > 0 then
  persist_batch(b)  -- a finished batch re-opened: its old results must outlive the new run
  wake(added)
end
return added
"""
)

# ARGV: prefix, worker, lease_ms, reap_limit, count. Leases up to `count` tasks to the worker in
# priority order (a batched claim: one round trip for many short tasks); returns their hashes,
# each as one JSON object (one bulk string to parse, not a nested array: redis-py's pure-Python
# reply parser cost more per task than the script), possibly none. Each is leased on its own, so
# a worker that dies holding them gives every one back when its lease expires, as if it had
# claimed them one at a time.
CLAIM = (
    PRELUDE
    + r"""
local now = now_ms()
reap(now, tonumber(ARGV[4]))
local want = tonumber(ARGV[5] or '1')
local claimed = {}
local deadline = fmt(now + tonumber(ARGV[3]))
while #claimed < want do
  local popped = redis.call('ZPOPMIN', p .. ':pending', want - #claimed)
  if #popped == 0 then break end
  for j = 1, #popped, 2 do
    local ref = popped[j]
    local tk = tkey(ref)
    local batch = redis.call('HGET', tk, 'batch')
    if batch then
      redis.call('HINCRBY', tk, 'attempts', 1)
      redis.call('HSET', tk, 'state', 'running', 'worker', ARGV[2], 'started_at', fmt(now))
      redis.call('ZADD', p .. ':leases', deadline, ref)
      redis.call('SREM', bkey(batch, 'queued'), ref)
      redis.call('SADD', bkey(batch, 'running'), ref)
      redis.call('HSETNX', p .. ':batch:' .. batch, 'first_started_at', fmt(now))
      local flat = redis.call('HGETALL', tk)
      local fields = {}
      for k = 1, #flat, 2 do fields[flat[k]] = flat[k + 1] end
      claimed[#claimed + 1] = cjson.encode(fields)
    end
  end
end
return claimed
"""
)

# ARGV: prefix, ref, worker, metrics_json, result_path, run_seconds, data_json.
# A result from a worker that lost its lease is still a valid result: the first one wins.
COMPLETE = (
    PRELUDE
    + r"""
local now = now_ms()
local ref = ARGV[2]
local state = redis.call('HGET', tkey(ref), 'state')
if not state then return 'missing' end
if state == 'done' or state == 'failed' or state == 'cancelled' then return 'duplicate' end
redis.call('HSET', tkey(ref), 'worker', ARGV[3])
finish(ref, 'succeeded', now,
  {'metrics', ARGV[4], 'result_path', ARGV[5], 'run_seconds', ARGV[6], 'data', ARGV[7], 'error', ''})
return 'done'
"""
)

# ARGV: prefix, ref, worker, error, fatal ('1'/'0'), run_seconds.
# Only the current lease holder may fail a task: a stale worker's error is ignored
# because another attempt is already queued or running.
FAIL = (
    PRELUDE
    + r"""
local now = now_ms()
local ref = ARGV[2]
local f = redis.call('HMGET', tkey(ref), 'state', 'worker', 'attempts', 'max_attempts')
if not f[1] then return 'missing' end
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return 'ignored' end
if ARGV[5] == '1' or tonumber(f[3]) >= tonumber(f[4]) then
  finish(ref, 'failed', now, {'error', ARGV[4], 'run_seconds', ARGV[6]})
  return 'dead'
end
return requeue(ref, ARGV[4], true)
"""
)

# ARGV: prefix, ref, worker, lease_ms. 1 if the lease is still ours (and now extended).
RENEW = (
    PRELUDE
    + r"""
local ref = ARGV[2]
local f = redis.call('HMGET', tkey(ref), 'state', 'worker')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return 0 end
redis.call('ZADD', p .. ':leases', 'XX', fmt(now_ms() + tonumber(ARGV[4])), ref)
return 1
"""
)

# ARGV: prefix, ref, worker. Give a task back without spending an attempt (graceful stop).
RELEASE = (
    PRELUDE
    + r"""
local ref = ARGV[2]
local f = redis.call('HMGET', tkey(ref), 'state', 'worker')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return 0 end
redis.call('HINCRBY', tkey(ref), 'attempts', -1)
requeue(ref, false, false)
return 1
"""
)

# ARGV: prefix, batch. Removes the batch's queued tasks; running ones finish (their
# result is kept) but are not re-queued if they fail.
CANCEL = (
    PRELUDE
    + r"""
local b = ARGV[2]
redis.call('HSET', p .. ':batch:' .. b, 'cancelled', '1')
local refs = redis.call('SMEMBERS', bkey(b, 'queued'))
for _, ref in ipairs(refs) do cancel_one(ref, b) end
expire_if_complete(b)
return #refs
"""
)

# ARGV: prefix, limit. Re-queue (or dead-letter) tasks whose lease has expired.
REAP = (
    PRELUDE
    + r"""
return reap(now_ms(), tonumber(ARGV[2]))
"""
)

# ARGV: prefix, worker, ttl_ms, then field, value, ... Records a worker's heartbeat.
HEARTBEAT = (
    PRELUDE
    + r"""
local now = now_ms()
local wk = p .. ':worker:' .. ARGV[2]
redis.call('HSET', wk, 'last_seen', fmt(now), unpack(ARGV, 4))
redis.call('PEXPIRE', wk, ARGV[3])
redis.call('ZADD', p .. ':workers', fmt(now), ARGV[2])
redis.call('ZREMRANGEBYSCORE', p .. ':workers', '-inf', fmt(now - 600000))
return fmt(now)
"""
)
