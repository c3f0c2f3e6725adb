"""Lua scripts of the Redis backend: each one transition of the job state
machine (see :mod:`tenfold.queue.job`), run atomically inside Redis.

Keys (``P`` is the prefix, one instance, not Redis Cluster: scripts derive
per-job keys from ids)::

    P:job:<id>         hash   the job record (JSON input/result/error)
    P:stream:<model>   stream work entries {id}, consumer group "workers"; no MAXLEN:
                              entries are XACK+XDEL'd when their attempt ends
    P:queued:<model>   zset   id -> queued_at   (claimable or waiting out a backoff)
    P:delayed:<model>  zset   id -> due_at      (retry backoff; moved to the stream when due)
    P:running:<model>  zset   id -> lease expiry (past: claimable again)
    P:dead:<model>     zset   id -> finished_at (dead letters)
    P:idem:<model>:<key>      string -> job id
    P:waits:<model>    hash   per-second sums of queue wait, for stats ("<second>:n",
                              "<second>:s"); CLAIM drops the seconds that left the window
    P:models           set    model names
    P:done             pub/sub channel: jobs that became terminal, as "<id>", or as
                              "<id> <JSON array of the job hash's fields and values>"
                              when input + result + error fit NOTIFY_MAX_BYTES
                              (a waiter then needs no read back)

Timestamps come from the caller's clock as ARGV (never Redis ``TIME``), so
leases, backoff and expiry follow the injected clock exactly as in SQLite.
"""

from __future__ import annotations

#: A finished job whose input, result and error JSON add up to at most this many bytes
#: travels inside its "done" notification: every API process receives every one.
NOTIFY_MAX_BYTES = 16_384

# Shared prelude: ARGV[1] is always the key prefix.
_PRELUDE = (
    f"""
local P = ARGV[1]
local NOTIFY_MAX_BYTES = {NOTIFY_MAX_BYTES}"""
    + """
local function jkey(id) return P .. ':job:' .. id end
local function mkey(kind, model) return P .. ':' .. kind .. ':' .. model end
local function end_entry(model, jk, group)
  -- The attempt's stream entry is done: acknowledge and delete it (no MAXLEN, ever).
  local entry = redis.call('HGET', jk, 'entry')
  if entry then
    local stream = mkey('stream', model)
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
    redis.call('HDEL', jk, 'entry')
  end
end
local function push_entry(model, jk, id)
  local entry = redis.call('XADD', mkey('stream', model), '*', 'id', id)
  redis.call('HSET', jk, 'entry', entry)
end
local function notify_done(jk, id)
  local size = redis.call('HSTRLEN', jk, 'input') + redis.call('HSTRLEN', jk, 'result')
    + redis.call('HSTRLEN', jk, 'error')
  if size <= NOTIFY_MAX_BYTES then
    redis.call('PUBLISH', P .. ':done', id .. ' ' .. cjson.encode(redis.call('HGETALL', jk)))
  else
    redis.call('PUBLISH', P .. ':done', id)
  end
end
local function expire_job(jk, model, ttl_ms)
  redis.call('PEXPIRE', jk, ttl_ms)
  local idem = redis.call('HGET', jk, 'idempotency_key')
  if idem then redis.call('PEXPIRE', P .. ':idem:' .. model .. ':' .. idem, ttl_ms) end
end
"""
)

# ARGV: prefix, id, model, input_json, now, idempotency_key ('' for none), max_depth ('' for
#       none). Returns the id, '!full', or the earlier job's hash fields and values when the
#       idempotency key already names a live job.
ENQUEUE = (
    _PRELUDE
    + """
local id, model, now, key = ARGV[2], ARGV[3], ARGV[5], ARGV[6]
local ikey = P .. ':idem:' .. model .. ':' .. key
if key ~= '' then
  local existing = redis.call('GET', ikey)
  if existing then
    local exp = redis.call('HGET', jkey(existing), 'expires_at')
    local alive = (not exp) or tonumber(exp) > tonumber(now)
    if redis.call('EXISTS', jkey(existing)) == 1 and alive then
      -- The earlier job itself, read in this same atomic step (a separate read could
      -- find it expired a moment later).
      return redis.call('HGETALL', jkey(existing))
    end
  end
end
if ARGV[7] and ARGV[7] ~= '' then
  if redis.call('ZCARD', mkey('queued', model)) >= tonumber(ARGV[7]) then
    return '!full'
  end
end
local jk = jkey(id)
redis.call('HSET', jk, 'id', id, 'model', model, 'input', ARGV[4], 'status', 'queued',
  'attempts', 0, 'created_at', now, 'updated_at', now, 'queued_at', now)
if key ~= '' then
  redis.call('HSET', jk, 'idempotency_key', key)
  redis.call('SET', ikey, id)
end
push_entry(model, jk, id)
redis.call('ZADD', mkey('queued', model), now, id)
redis.call('SADD', P .. ':models', model)
return id
"""
)

# ARGV: prefix, model, now, n, lease_expires_at, token, worker, max_attempts, group, bucket,
#       stats_window_s
# Returns {dead_count, last_stream_id, {job hash fields}...}
CLAIM = (
    _PRELUDE
    + """
local model, now, n = ARGV[2], ARGV[3], tonumber(ARGV[4])
local expires, token, worker = ARGV[5], ARGV[6], ARGV[7]
local max_attempts, group = tonumber(ARGV[8]), ARGV[9]
local stream = mkey('stream', model)
local queued, delayed = mkey('queued', model), mkey('delayed', model)
local running = mkey('running', model)
local nnow = tonumber(now)
-- 1. Retries whose backoff is over go back on the stream.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', delayed, id)
  if redis.call('HGET', jkey(id), 'status') == 'queued' then push_entry(model, jkey(id), id) end
end
local out = {0, ''}
local taken, wait_sum = 0, 0
-- since: when an expired lease ran out (nil for a queued job). A job's wait counts from
-- when it last became claimable, which its queued_at then says: enqueue, release or
-- requeue, a retry's due time (set by FAIL), or the expiry of the lease it was taken from
-- (not the previous run and lease as queue time).
local function take(id, since)
  local jk = jkey(id)
  redis.call('HINCRBY', jk, 'attempts', 1)
  local queued_at = redis.call('HGET', jk, 'queued_at')
  if since and tonumber(since) > tonumber(queued_at) then
    queued_at = since
    redis.call('HSET', jk, 'queued_at', since)
  end
  wait_sum = wait_sum + math.max(0, nnow - tonumber(queued_at))
  redis.call('HSET', jk, 'status', 'running', 'token', token, 'started_at', now,
    'updated_at', now, 'worker', worker, 'lease_expires_at', expires)
  redis.call('ZREM', queued, id)
  redis.call('ZADD', running, expires, id)
  taken = taken + 1
  out[#out + 1] = redis.call('HGETALL', jk)
end
-- 2. Expired leases: claim again (XCLAIM moves the entry and bumps its delivery count),
--    or dead-letter a job whose attempts are spent (its worker keeps dying on it).
for _, id in ipairs(redis.call('ZRANGEBYSCORE', running, '-inf', now, 'LIMIT', 0, n)) do
  local jk = jkey(id)
  if redis.call('HGET', jk, 'status') ~= 'running' then
    redis.call('ZREM', running, id)
  elseif tonumber(redis.call('HGET', jk, 'attempts')) >= max_attempts then
    local attempts = redis.call('HGET', jk, 'attempts')
    end_entry(model, jk, group)
    redis.call('HSET', jk, 'status', 'dead', 'finished_at', now, 'updated_at', now, 'error',
      cjson.encode({type = 'LeaseExpired', message = 'lease expired on attempt ' .. attempts ..
      ': the worker died or stalled'}))
    redis.call('HDEL', jk, 'token', 'lease_expires_at')
    redis.call('ZREM', running, id)
    redis.call('ZADD', mkey('dead', model), now, id)
    notify_done(jk, id)
    out[1] = out[1] + 1
  else
    local entry = redis.call('HGET', jk, 'entry')
    if entry then redis.call('XCLAIM', stream, group, worker, 0, entry) end
    take(id, redis.call('HGET', jk, 'lease_expires_at'))
  end
end
-- 3. New entries. An entry whose job is no longer queued (cancelled, or a duplicate
--    delivery after the group was recreated) is acknowledged and dropped.
if taken < n then
  local res = redis.call('XREADGROUP', 'GROUP', group, worker, 'COUNT', n - taken,
    'STREAMS', stream, '>')
  if res then
    for _, e in ipairs(res[1][2]) do
      local entry, id = e[1], e[2][2]
      local jk = jkey(id)
      local st = redis.call('HMGET', jk, 'status', 'entry')
      if st[1] == 'queued' and st[2] == entry then
        take(id)
      else
        redis.call('XACK', stream, group, entry)
        redis.call('XDEL', stream, entry)
      end
    end
  end
end
if taken > 0 then
  local waits = mkey('waits', model)
  redis.call('HINCRBY', waits, ARGV[10] .. ':n', taken)
  redis.call('HINCRBYFLOAT', waits, ARGV[10] .. ':s', wait_sum)
  -- Bounded without anyone reading stats: past two windows' worth of seconds (two fields
  -- each), drop every second that left the window (amortised: one scan per window).
  local window = tonumber(ARGV[11])
  if redis.call('HLEN', waits) > 4 * (math.ceil(window) + 1) then
    local cutoff = tonumber(ARGV[10]) - window
    for _, f in ipairs(redis.call('HKEYS', waits)) do
      local second = tonumber(string.match(f, '^([^:]*):'))
      if second == nil or second < cutoff then redis.call('HDEL', waits, f) end
    end
  end
else
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then out[2] = info[i + 1] end
  end
end
return out
"""
)

# ARGV: prefix, model. After the stream was lost (NOGROUP: the key evicted or deleted while
# the job records survive; the group was just recreated with MKSTREAM): a new entry, oldest
# first, for every queued job whose entry is gone, or it would never be delivered again.
# Retries waiting out a backoff get theirs from CLAIM when due; running jobs need none
# (their completion acknowledges whatever entry is left). Returns how many were added.
REPAIR = (
    _PRELUDE
    + """
local model = ARGV[2]
local stream, delayed = mkey('stream', model), mkey('delayed', model)
local queued = mkey('queued', model)
-- Only a lost stream lost entries: when it still holds one per claimable queued job,
-- nothing to scan (a recreated group alone, e.g. after a restart, costs O(1) here).
if redis.call('XLEN', stream) >= redis.call('ZCARD', queued) - redis.call('ZCARD', delayed) then
  return 0
end
local added = 0
for _, id in ipairs(redis.call('ZRANGE', queued, 0, -1)) do
  local jk = jkey(id)
  local st = redis.call('HMGET', jk, 'status', 'entry')
  if st[1] == 'queued' and not redis.call('ZSCORE', delayed, id)
      and ((not st[2]) or #redis.call('XRANGE', stream, st[2], st[2]) == 0) then
    push_entry(model, jk, id)
    added = added + 1
  end
end
return added
"""
)

_FENCE = """
local id, token = ARGV[2], ARGV[3]
local jk = jkey(id)
local st = redis.call('HMGET', jk, 'status', 'token', 'model')
if st[1] ~= 'running' or st[2] ~= token then return 0 end
local model = st[3]
"""

# ARGV: prefix, id, token, lease_expires_at, now, group
HEARTBEAT = (
    _PRELUDE
    + _FENCE
    + """
redis.call('HSET', jk, 'lease_expires_at', ARGV[4], 'updated_at', ARGV[5])
redis.call('ZADD', mkey('running', model), ARGV[4], id)
local entry, worker = unpack(redis.call('HMGET', jk, 'entry', 'worker'))
if entry and worker then
  -- JUSTID: reset the entry's idle time without bumping its delivery count.
  redis.pcall('XCLAIM', mkey('stream', model), ARGV[6], worker, 0, entry, 'JUSTID')
end
return 1
"""
)

# ARGV: prefix, id, token, result_json, now, expires_at, ttl_ms, group
COMPLETE = (
    _PRELUDE
    + _FENCE
    + """
end_entry(model, jk, ARGV[8])
redis.call('HSET', jk, 'status', 'succeeded', 'result', ARGV[4], 'finished_at', ARGV[5],
  'updated_at', ARGV[5], 'expires_at', ARGV[6])
redis.call('HDEL', jk, 'token', 'error', 'lease_expires_at')
redis.call('ZREM', mkey('running', model), id)
expire_job(jk, model, ARGV[7])
notify_done(jk, id)
return 1
"""
)

# ARGV: prefix, id, token, new_status, due_at ('' unless queued), error_json, now,
#       expires_at ('' unless failed), ttl_ms, group
FAIL = (
    _PRELUDE
    + _FENCE
    + """
local status, due, now = ARGV[4], ARGV[5], ARGV[7]
end_entry(model, jk, ARGV[10])
redis.call('HDEL', jk, 'token', 'lease_expires_at')
redis.call('ZREM', mkey('running', model), id)
redis.call('HSET', jk, 'status', status, 'error', ARGV[6], 'updated_at', now)
if status == 'queued' then
  redis.call('HSET', jk, 'queued_at', due)
  redis.call('ZADD', mkey('queued', model), due, id)
  redis.call('ZADD', mkey('delayed', model), due, id)
elseif status == 'dead' then
  redis.call('HSET', jk, 'finished_at', now)
  redis.call('ZADD', mkey('dead', model), now, id)
  notify_done(jk, id)
else
  redis.call('HSET', jk, 'finished_at', now, 'expires_at', ARGV[8])
  expire_job(jk, model, ARGV[9])
  notify_done(jk, id)
end
return 1
"""
)

# ARGV: prefix, id, token, now, group
RELEASE = (
    _PRELUDE
    + _FENCE
    + """
end_entry(model, jk, ARGV[5])
redis.call('HDEL', jk, 'token', 'lease_expires_at')
redis.call('ZREM', mkey('running', model), id)
redis.call('HSET', jk, 'status', 'queued', 'queued_at', ARGV[4], 'updated_at', ARGV[4])
-- A release gives the job back unrun (graceful shutdown): it is not an attempt.
if tonumber(redis.call('HGET', jk, 'attempts') or '0') > 0 then
  redis.call('HINCRBY', jk, 'attempts', -1)
end
redis.call('ZADD', mkey('queued', model), ARGV[4], id)
push_entry(model, jk, id)
return 1
"""
)

# ARGV: prefix, id, now, expires_at, ttl_ms, group
CANCEL = (
    _PRELUDE
    + """
local id, now = ARGV[2], ARGV[3]
local jk = jkey(id)
local st = redis.call('HMGET', jk, 'status', 'model')
if st[1] ~= 'queued' then return 0 end
local model = st[2]
end_entry(model, jk, ARGV[6])
redis.call('ZREM', mkey('queued', model), id)
redis.call('ZREM', mkey('delayed', model), id)
redis.call('HSET', jk, 'status', 'cancelled', 'finished_at', now, 'updated_at', now,
  'expires_at', ARGV[4])
expire_job(jk, model, ARGV[5])
notify_done(jk, id)
return 1
"""
)

# ARGV: prefix, model, now
REQUEUE_DEAD = (
    _PRELUDE
    + """
local model, now = ARGV[2], ARGV[3]
local dead = mkey('dead', model)
local count = 0
for _, id in ipairs(redis.call('ZRANGE', dead, 0, -1)) do
  local jk = jkey(id)
  if redis.call('HGET', jk, 'status') == 'dead' then
    count = count + 1
    redis.call('HSET', jk, 'status', 'queued', 'attempts', 0, 'queued_at', now, 'updated_at', now)
    redis.call('HDEL', jk, 'error', 'finished_at')
    redis.call('ZADD', mkey('queued', model), now, id)
    push_entry(model, jk, id)
  end
end
redis.call('DEL', dead)
return count
"""
)

#: Every script above, registered once per client.
SCRIPT_NAMES = (
    "ENQUEUE",
    "CLAIM",
    "HEARTBEAT",
    "COMPLETE",
    "FAIL",
    "RELEASE",
    "CANCEL",
    "REQUEUE_DEAD",
    "REPAIR",
)
