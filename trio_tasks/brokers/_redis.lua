#!lua name=trio_tasks_3
--[[
trio-tasks: every state change of the Redis broker that touches more than one key.

Loaded once per connection with FUNCTION LOAD REPLACE (trio_tasks/brokers/_redis_scripts.py) and
called with FCALL. docs/redis.md describes the key layout; in short:

  KEYS (the same list, in this order, for every function; built by _redis_keys.py):
    1..4  q:1..q:4    lists of pending job ids, one per priority (RPUSH to queue, LPOP to take)
    5     scheduled   zset id -> run_at (POSIX seconds): delayed jobs and waiting retries
    6     running     zset id -> lease deadline (Redis server time, milliseconds)
    7     finished    zset id -> completed_at: retention of final jobs
    8     index       zset id -> submission sequence: GET /jobs, newest first
    9     wake        list of wake-up tokens that idle fetchers BLPOP on
    10    stats       hash of cluster-wide counters
    11    waiters     hash id -> 1 for jobs someone waits for (their end is PUBLISHed)
    12    seq         counter: submission order and lease tokens
  ARGV[1] is the key prefix ("tt:{namespace}:"); a job's record is the hash prefix.."job:"..id,
  the channels are prefix.."cancel" and prefix.."done". All keys share the {namespace} hash
  tag, so on Redis Cluster they live in one slot and every function is valid there.

A job hash holds the fields of trio_tasks._job.job_to_record, each value JSON-encoded (so Lua
never decodes user JSON), plus three private fields: tok (the fencing token of the current
or last lease), cxl (cancellation requested) and node (the node holding the lease).

Numbers arrive as strings and are stored as they came: Python formats floats with repr so no
precision is lost; Lua only converts to compare.
]]

local FIELDS = {
  'v', 'id', 'type', 'priority', 'payload', 'status', 'attempts', 'max_attempts', 'timeout',
  'created_at', 'run_at', 'started_at', 'completed_at', 'worker_id', 'result', 'error',
  'progress',
}

local PENDING, SCHEDULED, RUNNING = '"pending"', '"scheduled"', '"running"'
local COMPLETED, FAILED, CANCELLED = '"completed"', '"failed"', '"cancelled"'
local FINAL = {[COMPLETED] = true, [FAILED] = true, [CANCELLED] = true}

local SCHED, RUN, FINISHED, INDEX, WAKE, STATS, WAITERS, SEQ = 5, 6, 7, 8, 9, 10, 11, 12
-- Wake-up tokens kept at most: enough to wake every idle node, bounded when nobody listens.
local WAKE_CAP = 64
-- Work done per call by eviction and the reaper, so no call blocks Redis for long.
local BATCH = 200

local function job_key(prefix, id)
  return prefix .. 'job:' .. id
end

local function record(key)
  return redis.call('HMGET', key, unpack(FIELDS))
end

-- The record as one JSON array (the values are JSON already: no decoding, one string to
-- parse on the node instead of one per field). Used on the hot path (leasing).
local NFIELDS = #FIELDS
local function record_json(key)
  local values = redis.call('HMGET', key, unpack(FIELDS))
  for i = 1, NFIELDS do
    if not values[i] then
      values[i] = 'null'
    end
  end
  return '[' .. table.concat(values, ',') .. ']'
end

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function wake(keys, n)
  if n <= 0 then
    return
  end
  if n > 8 then
    n = 8
  end
  local tokens = {}
  for i = 1, n do
    tokens[i] = '1'
  end
  redis.call('RPUSH', keys[WAKE], unpack(tokens))
  redis.call('LTRIM', keys[WAKE], -WAKE_CAP, -1)
end

local function pending_left(keys)
  for p = 4, 1, -1 do
    if redis.call('LLEN', keys[p]) > 0 then
      return true
    end
  end
  return false
end

-- A job reaches a final state: record it, keep it for the retention period, tell waiters.
local function finalize(keys, prefix, id, key, status, now, ttl_ms, field, value)
  if field then
    redis.call('HSET', key, 'status', status, 'completed_at', now, field, value)
  else
    redis.call('HSET', key, 'status', status, 'completed_at', now)
  end
  redis.call('HDEL', key, 'cxl')
  redis.call('PEXPIRE', key, ttl_ms)
  redis.call('ZADD', keys[FINISHED], now, id)
  redis.call('HINCRBY', keys[STATS], string.sub(status, 2, -2), 1)
  if redis.call('HDEL', keys[WAITERS], id) == 1 then
    redis.call('PUBLISH', prefix .. 'done', id)
  end
end

local function forget(keys, prefix, ids)
  if #ids == 0 then
    return
  end
  local jobs = {}
  for i, id in ipairs(ids) do
    jobs[i] = job_key(prefix, id)
  end
  redis.call('DEL', unpack(jobs))
  redis.call('ZREM', keys[INDEX], unpack(ids))
  redis.call('ZREM', keys[FINISHED], unpack(ids))
end

-- Retention: drop final jobs older than ttl, then the oldest beyond max_jobs.
local function evict(keys, prefix, now, ttl_s, max_jobs)
  local horizon = tonumber(now) - tonumber(ttl_s)
  forget(keys, prefix,
    redis.call('ZRANGEBYSCORE', keys[FINISHED], '-inf', horizon, 'LIMIT', 0, BATCH))
  local excess = redis.call('ZCARD', keys[FINISHED]) - tonumber(max_jobs)
  if excess > 0 then
    if excess > BATCH then
      excess = BATCH
    end
    forget(keys, prefix, redis.call('ZRANGE', keys[FINISHED], 0, excess - 1))
  end
end

-- Every job not final: what the admission bound counts.
local function unfinished(keys)
  local n = redis.call('ZCARD', keys[SCHED]) + redis.call('ZCARD', keys[RUN])
  for p = 1, 4 do
    n = n + redis.call('LLEN', keys[p])
  end
  return n
end

--[[ lease: take up to #workers jobs, the oldest of the highest non-empty priority first, and
lease them, one per worker in order. workers holds JSON-encoded worker ids.
Returns {token1, record1 (JSON array), token2, record2, ...}.
]]
local function lease(keys, prefix, now, lease_ms, node, workers)
  local k = #workers
  local out = {}
  if k == 0 then
    return out
  end
  local deadline = server_ms() + lease_ms
  local taken = 0
  for p = 4, 1, -1 do
    while taken < k do
      local ids = redis.call('LPOP', keys[p], k - taken)
      if not ids then
        break
      end
      for _, id in ipairs(ids) do
        local key = job_key(prefix, id)
        if redis.call('EXISTS', key) == 1 then
          taken = taken + 1
          local token = redis.call('INCR', keys[SEQ])
          redis.call('HSET', key, 'status', RUNNING, 'started_at', now,
            'worker_id', workers[taken], 'tok', token, 'node', node)
          redis.call('HDEL', key, 'cxl')
          redis.call('HINCRBY', key, 'attempts', 1)
          redis.call('ZADD', keys[RUN], deadline, id)
          out[#out + 1] = token
          out[#out + 1] = record_json(key)
        end
      end
    end
    if taken >= k then
      break
    end
  end
  -- This node took all it could use and work remains: pass the wake-up on to another node.
  if taken >= k and pending_left(keys) then
    wake(keys, 1)
  end
  return out
end

--[[ fetch: lease jobs for idle workers. ARGV: prefix, now (POSIX seconds, for started_at),
lease_ms, node, k, worker_id JSON x k. Returns what lease returns.
]]
local function fetch(keys, args)
  local k = tonumber(args[5])
  return lease(keys, args[1], args[2], tonumber(args[3]), args[4], {unpack(args, 6, 5 + k)})
end

--[[ enqueue: admit a batch of jobs, all or none; then, as fetch does, lease jobs for the
submitting node's idle workers (the highest-priority oldest pending jobs, not necessarily these).
ARGV: prefix, max_unfinished, now, lease_ms, node, k, worker_id JSON x k, then per job: id,
priority, score ('' = pending, else run_at), nfields, field1, value1, ...
Returns {'full', unfinished} or {'ok', leased, r1, r2, ...}: leased is what lease returns; r is
1 (created), 2 (the same id earlier in this batch) or the existing record (HMGET of FIELDS).
]]
local function enqueue(keys, args)
  local prefix, limit = args[1], tonumber(args[2])
  local now, lease_ms, node, k = args[3], tonumber(args[4]), args[5], tonumber(args[6])
  local leased = {}
  local jobs, seen, results = {}, {}, {'ok', leased}
  local fresh = 0
  local i = 7 + k
  while i <= #args do
    local nfields = tonumber(args[i + 3])
    local job = {id = args[i], priority = tonumber(args[i + 1]), score = args[i + 2],
      first = i + 4, last = i + 3 + 2 * nfields}
    local key = job_key(prefix, job.id)
    if seen[job.id] then
      results[#results + 1] = 2
    elseif redis.call('EXISTS', key) == 1 then
      seen[job.id] = true
      results[#results + 1] = record(key)
    else
      seen[job.id] = true
      results[#results + 1] = 1
      job.key = key
      jobs[#jobs + 1] = job
      fresh = fresh + 1
    end
    i = job.last + 1
  end
  if fresh == 0 then
    return results
  end
  local current = unfinished(keys)
  if current + fresh > limit then
    return {'full', current}
  end
  local queued = 0
  for _, job in ipairs(jobs) do
    redis.call('HSET', job.key, unpack(args, job.first, job.last))
    if job.score == '' then
      redis.call('RPUSH', keys[job.priority], job.id)
      queued = queued + 1
    else
      redis.call('ZADD', keys[SCHED], job.score, job.id)
    end
    redis.call('ZADD', keys[INDEX], redis.call('INCR', keys[SEQ]), job.id)
  end
  redis.call('HINCRBY', keys[STATS], 'submitted', fresh)
  if queued > 0 and k > 0 then
    leased = lease(keys, prefix, now, lease_ms, node, {unpack(args, 7, 6 + k)})
    results[2] = leased
  end
  -- Jobs queued here and not taken at once: wake idle nodes for them.
  wake(keys, queued - #leased / 2)
  return results
end

--[[ renew: extend the leases a node holds. ARGV: prefix, lease_ms, then id, token pairs.
Returns one code per pair: 0 lease lost, 1 renewed, 2 renewed and cancellation requested.
]]
local function renew(keys, args)
  local prefix, lease_ms = args[1], tonumber(args[2])
  local deadline = server_ms() + lease_ms
  local out = {}
  for i = 3, #args, 2 do
    local id, token = args[i], args[i + 1]
    local cur = redis.call('HMGET', job_key(prefix, id), 'tok', 'status', 'cxl')
    if cur[1] == token and cur[2] == RUNNING then
      redis.call('ZADD', keys[RUN], deadline, id)
      out[#out + 1] = cur[3] and 2 or 1
    else
      out[#out + 1] = 0
    end
  end
  return out
end

--[[ finish: record the outcomes of leased jobs; each is fenced by its lease token; then lease
the next job for each worker that has just become free (as fetch does, after the outcomes, so
a retry queued now competes like any job).
ARGV: prefix, now, ttl_ms, ttl_s, max_jobs, node, lease_ms, k, worker_id JSON x k, then per
outcome: id, token, kind, value, at.
kind: c completed (value = result JSON), f failed (value = error JSON), r retry (value =
error JSON, at = run_at), x cancelled, l released (back to the front of its queue), u
un-fetched (as l, and the attempt is not counted).
Returns {statuses, leased}: statuses has one entry per outcome: the job's status (JSON) after
it, also when an earlier try of the same call already recorded it; else the job's current
record (the lease was lost: nothing was changed). leased is what lease returns.
]]
local function finish(keys, args)
  local prefix, now, ttl_ms, ttl_s, max_jobs = args[1], args[2], args[3], args[4], args[5]
  local node, lease_ms, k = args[6], tonumber(args[7]), tonumber(args[8])
  local out = {}
  local queued = 0
  for i = 9 + k, #args, 5 do
    local id, token, kind, value, at = args[i], args[i + 1], args[i + 2], args[i + 3],
      args[i + 4]
    local key = job_key(prefix, id)
    local cur = redis.call('HMGET', key, 'tok', 'status', 'cxl', 'priority')
    if cur[1] ~= token then
      out[#out + 1] = record(key)
    elseif cur[2] ~= RUNNING then
      out[#out + 1] = cur[2]
    else
      redis.call('ZREM', keys[RUN], id)
      local priority = tonumber(cur[4])
      if kind == 'c' then
        finalize(keys, prefix, id, key, COMPLETED, now, ttl_ms, 'result', value)
      elseif kind == 'f' then
        finalize(keys, prefix, id, key, FAILED, now, ttl_ms, 'error', value)
      elseif kind == 'x' or cur[3] then
        -- A cancellation was requested: a retry or a hand-back ends it instead.
        if kind == 'r' then
          finalize(keys, prefix, id, key, CANCELLED, now, ttl_ms, 'error', value)
        else
          finalize(keys, prefix, id, key, CANCELLED, now, ttl_ms)
        end
      elseif kind == 'r' then
        redis.call('HINCRBY', keys[STATS], 'retried', 1)
        if tonumber(at) <= tonumber(now) then
          redis.call('HSET', key, 'status', PENDING, 'error', value, 'run_at', at)
          redis.call('RPUSH', keys[priority], id)
          queued = queued + 1
        else
          redis.call('HSET', key, 'status', SCHEDULED, 'error', value, 'run_at', at)
          redis.call('ZADD', keys[SCHED], at, id)
        end
      else
        redis.call('HSET', key, 'status', PENDING)
        if kind == 'u' then
          redis.call('HINCRBY', key, 'attempts', -1)
        end
        redis.call('LPUSH', keys[priority], id)
        queued = queued + 1
      end
      out[#out + 1] = redis.call('HGET', key, 'status')
    end
  end
  local leased = lease(keys, prefix, now, lease_ms, node, {unpack(args, 9, 8 + k)})
  -- Jobs queued again here and not taken at once: wake idle nodes for them.
  wake(keys, queued - #leased / 2)
  evict(keys, prefix, now, ttl_s, max_jobs)
  return {out, leased}
end

--[[ cancel: ARGV: prefix, id, now, ttl_ms, ttl_s, max_jobs.
Returns {'missing'}, {'final', status}, {'running', record} (flagged and announced on the
cancel channel; the node running it stops it) or {'cancelled', record}.
]]
local function cancel(keys, args)
  local prefix, id, now, ttl_ms, ttl_s, max_jobs = args[1], args[2], args[3], args[4], args[5],
    args[6]
  local key = job_key(prefix, id)
  local cur = redis.call('HMGET', key, 'status', 'priority')
  local status = cur[1]
  if not status then
    return {'missing'}
  end
  if FINAL[status] then
    return {'final', status}
  end
  if status == RUNNING then
    redis.call('HSET', key, 'cxl', '1')
    redis.call('PUBLISH', prefix .. 'cancel', id)
    return {'running', record(key)}
  end
  if status == PENDING then
    redis.call('LREM', keys[tonumber(cur[2])], 1, id)
  else
    redis.call('ZREM', keys[SCHED], id)
  end
  finalize(keys, prefix, id, key, CANCELLED, now, ttl_ms)
  evict(keys, prefix, now, ttl_s, max_jobs)
  return {'cancelled', record(key)}
end

--[[ promote: move due scheduled jobs to the end of their queue, each exactly once.
ARGV: prefix, now. Returns {moved, next run_at or false}.
]]
local function promote(keys, args)
  local prefix, now = args[1], args[2]
  local due = redis.call('ZRANGEBYSCORE', keys[SCHED], '-inf', now, 'LIMIT', 0, BATCH)
  local moved = 0
  for _, id in ipairs(due) do
    redis.call('ZREM', keys[SCHED], id)
    local key = job_key(prefix, id)
    local priority = redis.call('HGET', key, 'priority')
    if priority then
      redis.call('HSET', key, 'status', PENDING)
      redis.call('RPUSH', keys[tonumber(priority)], id)
      moved = moved + 1
    end
  end
  wake(keys, moved)
  local nxt = redis.call('ZRANGE', keys[SCHED], 0, 0, 'WITHSCORES')
  return {moved, nxt[2] or false}
end

--[[ reap: leases past their deadline (server time) lose their job: it goes back to the front
of its queue, or ends cancelled (cancellation was requested) or failed (no attempts left).
The token is cleared so the node that lost the lease cannot record anything any more.
ARGV: prefix, now, ttl_ms, ttl_s, max_jobs, error JSON for jobs out of attempts.
Returns the ids reaped.
]]
local function reap(keys, args)
  local prefix, now, ttl_ms, ttl_s, max_jobs, error = args[1], args[2], args[3], args[4],
    args[5], args[6]
  local expired = redis.call('ZRANGEBYSCORE', keys[RUN], '-inf', server_ms(), 'LIMIT', 0, BATCH)
  local queued = 0
  for _, id in ipairs(expired) do
    redis.call('ZREM', keys[RUN], id)
    local key = job_key(prefix, id)
    local cur = redis.call('HMGET', key, 'status', 'cxl', 'priority', 'attempts', 'max_attempts')
    if cur[1] == RUNNING then
      redis.call('HSET', key, 'tok', '')
      redis.call('HINCRBY', keys[STATS], 'leases_expired', 1)
      if cur[2] then
        finalize(keys, prefix, id, key, CANCELLED, now, ttl_ms)
      elseif tonumber(cur[4]) >= tonumber(cur[5]) then
        finalize(keys, prefix, id, key, FAILED, now, ttl_ms, 'error', error)
      else
        redis.call('HSET', key, 'status', PENDING)
        redis.call('LPUSH', keys[tonumber(cur[3])], id)
        queued = queued + 1
      end
    end
  end
  wake(keys, queued)
  if #expired > 0 then
    evict(keys, prefix, now, ttl_s, max_jobs)
  end
  return expired
end

-- progress: ARGV: prefix, id, token, value JSON. Returns 1 if recorded (lease still held).
local function progress(keys, args)
  local key = job_key(args[1], args[2])
  local cur = redis.call('HMGET', key, 'tok', 'status')
  if cur[1] == args[3] and cur[2] == RUNNING then
    redis.call('HSET', key, 'progress', args[4])
    return 1
  end
  return 0
end

-- watch: ARGV: prefix, id. The record (false if none); unless final, its end will be
-- PUBLISHed on the done channel.
local function watch(keys, args)
  local key = job_key(args[1], args[2])
  local status = redis.call('HGET', key, 'status')
  if not status then
    return false
  end
  if not FINAL[status] then
    redis.call('HSET', keys[WAITERS], args[2], '1')
  end
  return record(key)
end

-- counts: {pending low, normal, high, urgent, scheduled, running}.
local function counts(keys, args)
  return {
    redis.call('LLEN', keys[1]), redis.call('LLEN', keys[2]), redis.call('LLEN', keys[3]),
    redis.call('LLEN', keys[4]), redis.call('ZCARD', keys[SCHED]), redis.call('ZCARD', keys[RUN]),
  }
end

--[[ list: newest first. ARGV: prefix, status JSON or '', type JSON or '', limit, scan_max.
Returns the matching records; index entries whose job has expired are dropped.
]]
local function list(keys, args)
  local prefix, status, jtype, limit, scan_max = args[1], args[2], args[3], tonumber(args[4]),
    tonumber(args[5])
  local out, gone = {}, {}
  local start, page = 0, 200
  while #out < limit and start < scan_max do
    local ids = redis.call('ZREVRANGE', keys[INDEX], start, start + page - 1)
    if #ids == 0 then
      break
    end
    for _, id in ipairs(ids) do
      local key = job_key(prefix, id)
      local cur = redis.call('HMGET', key, 'status', 'type')
      if not cur[1] then
        gone[#gone + 1] = id
      elseif (status == '' or cur[1] == status) and (jtype == '' or cur[2] == jtype) then
        out[#out + 1] = record(key)
        if #out >= limit then
          break
        end
      end
    end
    start = start + page
  end
  for first = 1, #gone, BATCH do
    local chunk = {unpack(gone, first, math.min(first + BATCH - 1, #gone))}
    redis.call('ZREM', keys[INDEX], unpack(chunk))
    redis.call('ZREM', keys[FINISHED], unpack(chunk))
  end
  return out
end

redis.register_function('tt3_enqueue', enqueue)
redis.register_function('tt3_fetch', fetch)
redis.register_function('tt3_renew', renew)
redis.register_function('tt3_finish', finish)
redis.register_function('tt3_cancel', cancel)
redis.register_function('tt3_promote', promote)
redis.register_function('tt3_reap', reap)
redis.register_function('tt3_progress', progress)
redis.register_function('tt3_watch', watch)
redis.register_function('tt3_list', list)
redis.register_function{function_name = 'tt3_counts', callback = counts, flags = {'no-writes'}}
