#!lua name=trio_tasks_8
--[[
trio-tasks: every state change of the Redis broker that touches more than one key.

Loaded once per connection with FUNCTION LOAD REPLACE (trio_tasks/brokers/_redis_scripts.py) and
called with FCALL. docs/redis.md describes the key layout; in short:

  keys (the same list, in this order, for every function; named by _redis_keys.py, built from
  the prefix by namespaced: the caller's KEYS is one key of the namespace, for routing):
    1..4  q:1..q:4    lists of pending job ids, one per priority (RPUSH to queue, LPOP to take)
    5     scheduled   zset id -> run_at (POSIX seconds): delayed jobs and waiting retries
    6     running     zset id -> lease deadline (Redis server time, milliseconds)
    7     finished    zset id -> completed_at: retention of final jobs (a failed job's score is
                      completed_at + failed_ttl - ttl: kept longer, evicted by count last)
    8     index       zset id -> submission sequence: GET /jobs, newest first
    9     wake        list of wake-up tokens that idle fetchers BLPOP on
    10    stats       hash of cluster-wide counters
    11    waiters     hash id -> 1 for jobs someone waits for (their end is PUBLISHed)
    12    seq         counter: submission order and lease tokens
    13    nodes       zset node id -> registry deadline (server ms): the live nodes
    14    sizes       hash id -> bytes: the size of each job in finished (job_size)
    15    finished_bytes  counter: the sum of sizes, what RESULT_MAX_BYTES bounds
    16    limits      hash type (JSON) -> "concurrency,count,period|rate text" (each may be
                      empty): the per-type limits, written by the nodes at start-up
                      (set_limits)
    17    limrun      hash type (JSON) -> jobs of that limited type running now
    18    limdue      zset type (JSON) -> POSIX seconds: when a rate lets a held job start
  Per limited type T (its JSON form), beside those: prefix.."held:"..T, a zset of the jobs held
  back by a limit (pending, out of the queues; score (4 - priority) * 2^44 + sequence, so the
  highest priority, earliest held comes first), and prefix.."starts:"..T, a list of the start
  times of its last <count> jobs, newest first (the sliding window of its rate).
  ARGV[1] is the key prefix ("tt:{namespace}:"); a job's record is the hash prefix.."job:"..id,
  the channels are prefix.."cancel" and prefix.."done". All keys share the {namespace} hash
  tag, so on Redis Cluster they live in one slot and every function is valid there.

A job hash holds the fields of trio_tasks._job.job_to_record, each value JSON-encoded (so Lua
never decodes user JSON; a new job's hash leaves out the fields that are null, and meta and
errors while empty: a missing field reads as null, see record_json and
trio_tasks/brokers/_redis_codec.py), plus three private fields: tok (the fencing token of the current
or last lease), cxl (cancellation requested), node (the node holding the lease), qtn (the
record was quarantined: see quarantine) and lim (the job runs counted in limrun under this
type: every end of the run frees that slot, see free_slot).

No function raises on a corrupt record (a field that is not what it should be, a key of another
type than hash): each reports it to the node instead, which salvages what it can and calls
quarantine. A priority that is not 1-4 queues the job as normal (2) until then.

Numbers arrive as strings and are stored as they came: Python formats floats with repr so no
precision is lost; Lua only converts to compare.
]]

-- The record's fields: trio_tasks._job.RECORD_FIELDS, put in place by
-- trio_tasks/brokers/_redis_scripts.py:library_code() when the library is loaded.
local FIELDS = {--[[RECORD_FIELDS]]}
-- The fields every new record has, whose values enqueue gets without their names:
-- trio_tasks.brokers._redis_codec.NEW_JOB_FIELDS, put in place the same way.
local NEW_FIELDS = {--[[NEW_JOB_FIELDS]]}
local NNEW = #NEW_FIELDS
-- Their names, each followed by a place for its value (HSET's arguments).
local NEW_PAIRS = {}
for f = 1, NNEW do
  NEW_PAIRS[2 * f - 1] = NEW_FIELDS[f]
  NEW_PAIRS[2 * f] = false
end

local PENDING, SCHEDULED, RUNNING = '"pending"', '"scheduled"', '"running"'
local COMPLETED, FAILED, CANCELLED = '"completed"', '"failed"', '"cancelled"'
local FINAL = {[COMPLETED] = true, [FAILED] = true, [CANCELLED] = true}
local KNOWN = {[PENDING] = true, [SCHEDULED] = true, [RUNNING] = true, [COMPLETED] = true,
  [FAILED] = true, [CANCELLED] = true}
local QUEUE = {['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4}

local SCHED, RUN, FINISHED, INDEX, WAKE, STATS, WAITERS, SEQ, NODES = 5, 6, 7, 8, 9, 10, 11, 12,
  13
local SIZES, FINISHED_BYTES = 14, 15
local LIMITS, LIMRUN, LIMDUE = 16, 17, 18
-- Jobs held back by a limit per lease call at most (the rest wait for the next call).
local HOLD_MAX = 1000
-- The priority's weight in a held job's score: (4 - priority) * HELD_LEVEL + sequence.
local HELD_LEVEL = 17592186044416
-- A corrupt running job the node did not quarantine yet is looked at again after this long.
local CORRUPT_RETRY_MS = 5000
-- Wake-up tokens kept at most: enough to wake every idle node, bounded when nobody listens.
local WAKE_CAP = 64
-- Its LTRIM start (-WAKE_CAP) as text: a number passed to redis.call is formatted at every
-- call (and tostring is not there while the library loads).
local WAKE_KEEP = '-64'
-- Work done per call by eviction and the reaper, so no call blocks Redis for long.
local BATCH = 200
-- What a finished job costs beside its payload, result and error: the record and its indexes
-- (trio_tasks.brokers._retention.RECORD_OVERHEAD).
local RECORD_OVERHEAD = 512
-- Values per command when a batch's ids go in one command (see chunked).
local CHUNK = 1000

-- A command on key with the values of items as its last arguments (nothing if there is none),
-- CHUNK values per call (an even number: pairs stay together), as unpack is bounded by Lua's
-- stack; the sum of the replies.
local function chunked(cmd, key, items)
  local total = 0
  for first = 1, #items, CHUNK do
    total = total + redis.call(cmd, key, unpack(items, first, math.min(first + CHUNK - 1, #items)))
  end
  return total
end

-- The names of the keys every function uses, after the prefix, in the order of the KEYS list
-- described above: trio_tasks.brokers._redis_keys.RedisKeys.script_keys, put in place by
-- trio_tasks/brokers/_redis_scripts.py:library_code() when the library is loaded.
local KEY_NAMES = {--[[KEY_NAMES]]}

-- A function called with its namespace's keys made here from the prefix (ARGV[1]): the
-- caller passes one key of the namespace (for Redis Cluster's routing; every key of a
-- namespace is in one slot) instead of all of them, which cost Redis about a tenth of a
-- submission to receive and hand to Lua. The names are remembered per prefix: making them
-- at every call costs more than receiving them (string building in Lua). What is remembered
-- is only a function of the prefix, never data, so no call depends on an earlier one but
-- for speed; a few prefixes at most are kept (one per namespace in use).
local KEYS_OF, KEYS_KEPT = {}, 0
local function namespaced(fn)
  return function(_, args)
    local prefix = args[1]
    local keys = KEYS_OF[prefix]
    if not keys then
      if KEYS_KEPT >= 64 then
        KEYS_OF, KEYS_KEPT = {}, 0
      end
      KEYS_KEPT = KEYS_KEPT + 1
      keys = {}
      for i = 1, #KEY_NAMES do
        keys[i] = prefix .. KEY_NAMES[i]
      end
      KEYS_OF[prefix] = keys
    end
    return fn(keys, args)
  end
end

local function job_key(prefix, id)
  return prefix .. 'job:' .. id
end

local function record(key)
  return redis.call('HMGET', key, unpack(FIELDS))
end

-- HMGET of some fields, or nil when the key holds another type than a hash.
local function fields(key, ...)
  local cur = redis.pcall('HMGET', key, ...)
  if cur.err then
    return nil
  end
  return cur
end

-- The queue (its KEYS index) of a stored priority; 2 (normal) for a value that is not 1-4.
local function queue_of(priority)
  return QUEUE[priority] or 2
end

local function key_type(key)
  return redis.call('TYPE', key)['ok']
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
  -- Trimmed only when nobody took them: an idle node blocked on the list takes its token
  -- at once, so the list stays short (one command).
  if redis.call('RPUSH', keys[WAKE], unpack(tokens)) > WAKE_CAP then
    redis.call('LTRIM', keys[WAKE], WAKE_KEEP, '-1')
  end
end

local function pending_left(keys)
  for p = 4, 1, -1 do
    if redis.call('LLEN', keys[p]) > 0 then
      return true
    end
  end
  return false
end

-- Seconds as PEXPIRE milliseconds, rounded as the node's ms() does.
local function ms(seconds)
  return math.max(1, math.floor(tonumber(seconds) * 1000 + 0.5))
end

-- The bytes a finished job counts against RESULT_MAX_BYTES, as the memory broker's
-- record_size measures them: RECORD_OVERHEAD plus the stored JSON of its payload, result and
-- error (their lengths: no decoding; a null result or error counts nothing). Only commands
-- of the documented ACL rule: HMGET and GET/SET (in place of HSTRLEN and INCRBY).
local function job_size(key)
  local size = RECORD_OVERHEAD
  for _, value in ipairs(redis.call('HMGET', key, 'payload', 'result', 'error')) do
    if value and value ~= 'null' then
      size = size + #value
    end
  end
  return size
end

local function add_bytes(keys, n)
  local total = (tonumber(redis.call('GET', keys[FINISHED_BYTES])) or 0) + n
  redis.call('SET', keys[FINISHED_BYTES], total)
end

-- Record the size of a job entering finished (replacing any size recorded for it before).
local function add_size(keys, id, key)
  local size = job_size(key)
  local old = tonumber(redis.call('HGET', keys[SIZES], id)) or 0
  redis.call('HSET', keys[SIZES], id, size)
  add_bytes(keys, size - old)
end

-- Take the recorded sizes of ids (left finished, or never in it) out of the total.
local function drop_sizes(keys, ids)
  if #ids == 0 then
    return
  end
  local sizes = redis.call('HMGET', keys[SIZES], unpack(ids))
  local total = 0
  for i = 1, #ids do
    total = total + (tonumber(sizes[i]) or 0)
  end
  if total ~= 0 then
    redis.call('HDEL', keys[SIZES], unpack(ids))
    add_bytes(keys, -total)
  end
end

-- A job reaches a final state: record it, keep it for the retention period (failed_s for a
-- failed job, ttl_s for the others: failed_s >= ttl_s), tell waiters. A failed job's score in
-- finished is moved ahead by failed_s - ttl_s, so evict (by age at ttl_s, then the lowest
-- scores by count) keeps it for failed_s and drops it after the completed ones.
local function finalize(keys, prefix, id, key, status, now, ttl_s, failed_s, field, value)
  local keep, score = ttl_s, now
  if status == FAILED then
    keep, score = failed_s, tonumber(now) + tonumber(failed_s) - tonumber(ttl_s)
  end
  if field then
    redis.call('HSET', key, 'status', status, 'completed_at', now, field, value)
  else
    redis.call('HSET', key, 'status', status, 'completed_at', now)
  end
  redis.call('HDEL', key, 'cxl')
  redis.call('PEXPIRE', key, ms(keep))
  redis.call('ZADD', keys[FINISHED], score, id)
  add_size(keys, id, key)
  redis.call('HINCRBY', keys[STATS], string.sub(status, 2, -2), 1)
  if redis.call('HDEL', keys[WAITERS], id) == 1 then
    -- The final record travels with the announcement: the waiter needs no second read.
    redis.call('PUBLISH', prefix .. 'done', id .. '\n' .. record_json(key))
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
  drop_sizes(keys, ids)
end

-- Retention: drop final jobs older than ttl (and with them the sizes of those whose key
-- expired already), then the oldest beyond max_jobs, then the oldest while their sizes sum to
-- more than max_bytes; at most BATCH jobs by each rule per call.
local function evict(keys, prefix, now, ttl_s, max_jobs, max_bytes)
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
  local over = (tonumber(redis.call('GET', keys[FINISHED_BYTES])) or 0) - tonumber(max_bytes)
  if over > 0 then
    local oldest = redis.call('ZRANGE', keys[FINISHED], 0, BATCH - 1)
    if #oldest > 0 then
      local sizes = redis.call('HMGET', keys[SIZES], unpack(oldest))
      local ids = {}
      for i, id in ipairs(oldest) do
        ids[i] = id
        over = over - (tonumber(sizes[i]) or 0)
        if over <= 0 then
          break
        end
      end
      forget(keys, prefix, ids)
    end
  end
end

-- Per-type limits -------------------------------------------------------------------------

-- A limit as stored in limits ("concurrency,count,period" and, for the figures only,
-- "|" and the rate as written), or nil.
local function parse_limit(spec)
  if not spec then
    return nil
  end
  local c, n, p = string.match(spec, '^([^,]*),([^,]*),([^,|]*)')
  if not c then
    return nil
  end
  local lim = {conc = tonumber(c), n = tonumber(n), period = tonumber(p)}
  if lim.n and not lim.period then
    lim.n = nil
  end
  return lim
end

-- Every limited type's limit ({[type] = limit}), or nil when no type has any.
local function load_limits(keys)
  local flat = redis.call('HGETALL', keys[LIMITS])
  if #flat == 0 then
    return nil
  end
  local out = {}
  for i = 1, #flat, 2 do
    out[flat[i]] = parse_limit(flat[i + 1])
  end
  return out
end

local function held_key(prefix, t)
  return prefix .. 'held:' .. t
end

local function starts_key(prefix, t)
  return prefix .. 'starts:' .. t
end

-- How many jobs of type t may start now, up to want: the free concurrency slots and the rate
-- window's free starts (the oldest start times, at the tail of the list, that left it).
local function slots(keys, prefix, t, lim, now, want)
  local free = want
  if lim.conc then
    local running = tonumber(redis.call('HGET', keys[LIMRUN], t)) or 0
    free = math.min(free, lim.conc - running)
  end
  if lim.n and free >= 1 then
    local ring = starts_key(prefix, t)
    local len = redis.call('LLEN', ring)
    local allowed = lim.n - len
    local horizon = tonumber(now) - lim.period
    local i = -1
    while allowed < free and -i <= len do
      local at = tonumber(redis.call('LINDEX', ring, i))
      if not at or at > horizon then
        break
      end
      allowed = allowed + 1
      i = i - 1
    end
    free = math.min(free, allowed)
  end
  return free
end

-- When the rate of type t lets the next job start, or nil if it does not hold any back.
local function rate_due(prefix, t, lim)
  if not (lim and lim.n) then
    return nil
  end
  local ring = starts_key(prefix, t)
  if redis.call('LLEN', ring) < lim.n then
    return nil
  end
  -- Formatted here: Lua would pass 14 significant digits, and a due time rounded down
  -- would wake maintenance too early.
  return string.format('%.6f', tonumber(redis.call('LINDEX', ring, lim.n - 1)) + lim.period
    + 0.000001)
end

-- Count a job of type t as started: a slot taken (lim field), its start in the rate window.
local function start_limited(keys, prefix, t, lim, now, key)
  redis.call('HINCRBY', keys[LIMRUN], t, 1)
  redis.call('HSET', key, 'lim', t)
  if lim.n then
    local ring = starts_key(prefix, t)
    redis.call('LPUSH', ring, now)
    redis.call('LTRIM', ring, 0, lim.n - 1)
  end
end

-- Hold a job of type t back (pending, out of the queues); note when its rate lets one start.
local function hold(keys, prefix, t, lim, id, priority)
  local score = (4 - queue_of(priority)) * HELD_LEVEL + redis.call('INCR', keys[SEQ])
  redis.call('ZADD', held_key(prefix, t), score, id)
  local due = rate_due(prefix, t, lim)
  if due then
    redis.call('ZADD', keys[LIMDUE], due, t)
  end
end

-- Put the held jobs of type t that may start now back at the front of their queues (all of
-- them if t has no limit any more), highest priority, earliest held first. Returns how many.
local function refill(keys, prefix, t, lim, now)
  local held = held_key(prefix, t)
  local count = redis.call('ZCARD', held)
  if count == 0 then
    redis.call('ZREM', keys[LIMDUE], t)
    return 0
  end
  local n = count
  if lim then
    n = slots(keys, prefix, t, lim, now, count)
  end
  if n >= 1 then
    local popped = redis.call('ZPOPMIN', held, n)
    for i = #popped - 1, 1, -2 do
      local level = 4 - math.floor(tonumber(popped[i + 1]) / HELD_LEVEL)
      redis.call('LPUSH', keys[queue_of(tostring(level))], popped[i])
    end
    n = #popped / 2
    wake(keys, n)
  else
    n = 0
  end
  local due = nil
  if count > n then
    due = rate_due(prefix, t, lim)
  end
  if due then
    redis.call('ZADD', keys[LIMDUE], due, t)
  else
    redis.call('ZREM', keys[LIMDUE], t)
  end
  return n
end

-- A running job counted under type t (its lim field) ended, any way: free its slot and let
-- the held jobs that may start now go back to the front of their queues.
local function free_slot(keys, prefix, t, key, now)
  redis.call('HDEL', key, 'lim')
  if redis.call('HINCRBY', keys[LIMRUN], t, -1) <= 0 then
    redis.call('HDEL', keys[LIMRUN], t)
  end
  refill(keys, prefix, t, parse_limit(redis.call('HGET', keys[LIMITS], t)), now)
end

-- Jobs held back, all types (pending: the admission bound and counts include them), and per
-- priority ({low, normal, high, urgent}).
local function held_counts(keys, prefix)
  local per = {0, 0, 0, 0}
  local total = 0
  for _, t in ipairs(redis.call('HKEYS', keys[LIMITS])) do
    local held = held_key(prefix, t)
    local n = redis.call('ZCARD', held)
    if n > 0 then
      total = total + n
      for p = 1, 4 do
        local low = (4 - p) * HELD_LEVEL
        per[p] = per[p] + redis.call('ZCOUNT', held, low, '(' .. (low + HELD_LEVEL))
      end
    end
  end
  return total, per
end

-- Take a job out of every held zset (quarantine: its type may not be readable).
local function unhold(keys, prefix, id)
  for _, t in ipairs(redis.call('HKEYS', keys[LIMITS])) do
    redis.call('ZREM', held_key(prefix, t), id)
  end
end

-- Every job not final: what the admission bound counts.
local function unfinished(keys, prefix)
  local n = redis.call('ZCARD', keys[SCHED]) + redis.call('ZCARD', keys[RUN])
  for p = 1, 4 do
    n = n + redis.call('LLEN', keys[p])
  end
  if redis.call('EXISTS', keys[LIMITS]) == 1 then
    n = n + held_counts(keys, prefix)
  end
  return n
end

--[[ lease: take up to #workers jobs, the oldest of the highest non-empty priority first, and
lease them, one per worker in order. workers holds JSON-encoded worker ids.
Returns {token1, id1, record1 (JSON array), token2, id2, record2, ...}; an id whose key holds
another type than a hash is popped, not leased, and returned as {type, id, false} (it takes no
worker's turn) for the node to quarantine.
]]
local function lease_one(keys, key, id, now, deadline, node, worker, out)
  local token = redis.call('INCR', keys[SEQ])
  redis.call('HSET', key, 'status', RUNNING, 'started_at', now,
    'worker_id', worker, 'tok', token, 'node', node)
  redis.call('HDEL', key, 'cxl')
  -- attempts that are not a number: the node finds the record corrupt.
  redis.pcall('HINCRBY', key, 'attempts', 1)
  redis.call('ZADD', keys[RUN], deadline, id)
  out[#out + 1] = token
  out[#out + 1] = id
  out[#out + 1] = record_json(key)
end

-- The queue (1-4) whose first job goes next under priority aging: the highest effective
-- priority (one level up per aging seconds waited since the job became runnable, urgent at
-- most), then the higher base priority, then the job waiting longer; nil if all are empty.
local function aged_queue(keys, prefix, now, aging)
  local best, best_eff, best_since = nil, 0, 0
  for p = 4, 1, -1 do
    local id = redis.call('LINDEX', keys[p], 0)
    if id then
      local v = fields(job_key(prefix, id), 'created_at', 'run_at')
      local since = v and tonumber(v[1]) or now
      local run_at = v and tonumber(v[2])
      if run_at and run_at > since then
        since = run_at
      end
      local eff = p
      if now > since then
        eff = math.min(4, p + math.floor((now - since) / aging))
      end
      -- Queues are visited from the highest base priority: a tie keeps the earlier one.
      if not best or eff > best_eff then
        best, best_eff, best_since = p, eff, since
      end
    end
  end
  return best
end

-- lease with per-type limits or priority aging: one job at a time; a job of a type at its
-- limit is held back (it takes no worker's turn) and the next one is looked at.
local function lease_ruled(keys, prefix, now, deadline, node, workers, aging, limits, out)
  local k = #workers
  local taken, held = 0, 0
  local tnow = tonumber(now)
  while taken < k and held < HOLD_MAX do
    local p
    if aging > 0 then
      p = aged_queue(keys, prefix, tnow, aging)
    else
      for q = 4, 1, -1 do
        if redis.call('LLEN', keys[q]) > 0 then
          p = q
          break
        end
      end
    end
    if not p then
      break
    end
    local id = redis.call('LPOP', keys[p])
    local key = job_key(prefix, id)
    local t = key_type(key)
    if t == 'hash' then
      local lim, jt = nil, nil
      if limits then
        jt = redis.call('HGET', key, 'type')
        lim = jt and limits[jt]
      end
      if not lim then
        taken = taken + 1
        lease_one(keys, key, id, now, deadline, node, workers[taken], out)
      elseif slots(keys, prefix, jt, lim, now, 1) >= 1 then
        taken = taken + 1
        start_limited(keys, prefix, jt, lim, now, key)
        lease_one(keys, key, id, now, deadline, node, workers[taken], out)
      else
        held = held + 1
        hold(keys, prefix, jt, lim, id, tostring(p))
      end
    elseif t ~= 'none' then
      out[#out + 1] = t
      out[#out + 1] = id
      out[#out + 1] = false
    end
  end
  return taken, held >= HOLD_MAX
end

local function lease(keys, prefix, now, lease_ms, node, workers, aging)
  local k = #workers
  local out = {}
  if k == 0 then
    return out
  end
  local deadline = server_ms() + lease_ms
  local taken, busy = 0, false
  local limits = load_limits(keys)
  if limits or aging > 0 then
    taken, busy = lease_ruled(keys, prefix, now, deadline, node, workers, aging, limits, out)
  else
    -- Strict priority, no limits: pop in batches.
    for p = 4, 1, -1 do
      while taken < k do
        local ids = redis.call('LPOP', keys[p], k - taken)
        if not ids then
          break
        end
        for _, id in ipairs(ids) do
          local key = job_key(prefix, id)
          local t = key_type(key)
          if t == 'hash' then
            taken = taken + 1
            lease_one(keys, key, id, now, deadline, node, workers[taken], out)
          elseif t ~= 'none' then
            out[#out + 1] = t
            out[#out + 1] = id
            out[#out + 1] = false
          end
        end
      end
      if taken >= k then
        break
      end
    end
  end
  -- This node took all it could use and work remains: pass the wake-up on to another node.
  if (taken >= k or busy) and pending_left(keys) then
    wake(keys, 1)
  end
  return out
end

--[[ fetch: lease jobs for idle workers. ARGV: prefix, now (POSIX seconds, for started_at),
lease_ms, node, aging (seconds; 0: strict priority), k, worker_id JSON x k. Returns what lease
returns.
]]
local function fetch(keys, args)
  local k = tonumber(args[6])
  return lease(keys, args[1], args[2], tonumber(args[3]), args[4], {unpack(args, 7, 6 + k)},
    tonumber(args[5]))
end

--[[ enqueue: admit a batch of jobs, all or none; then, as fetch does, lease jobs for the
submitting node's idle workers (the highest-priority oldest pending jobs, not necessarily these).
ARGV: prefix, max_unfinished, now, lease_ms, node, aging, k, worker_id JSON x k, then per job:
id, priority, score ('' = pending, else run_at), n, the values of NEW_FIELDS in their order, then
n more field, value pairs (the record's other fields that are set).
Returns {'full', unfinished} or {'ok', leased, r1, r2, ...}: leased is what lease returns; r is
1 (created), 2 (the same id earlier in this batch), the existing record (HMGET of FIELDS) or,
for a key of another type than hash, that type (the node quarantines it). A batch of one job,
created, with nothing leased, is answered 1 alone (as {'ok', {}, 1}).
Each step that the batch's jobs share is one command for all of them (the ids pushed per
queue, added to index and to scheduled, taken out of finished, and, for a batch whose ids are
all new, the look for existing keys): a Redis command from Lua costs about as much as the work
it does for one small job. The names of the fields every new record has are not sent: each
argument costs Redis about as much to receive as to store.
]]
local function enqueue(keys, args)
  local prefix, limit = args[1], tonumber(args[2])
  local now, lease_ms, node, aging = args[3], tonumber(args[4]), args[5], tonumber(args[6])
  local k = tonumber(args[7])
  local leased = {}
  local jobs, seen, results = {}, {}, {'ok', leased}
  local fresh = 0
  local nargs = #args
  -- The keys of the batch, then, for more than one, whether any exists (one EXISTS per
  -- CHUNK ids): when none does, a submission's usual case, no key needs its own TYPE.
  local i, n = 8 + k, 0
  local job_keys = {}
  while i <= nargs do
    n = n + 1
    job_keys[n] = job_key(prefix, args[i])
    i = i + 4 + NNEW + 2 * tonumber(args[i + 3])
  end
  local any = n == 1
  if n > 1 then
    for first = 1, n, CHUNK do
      if redis.call('EXISTS', unpack(job_keys, first, math.min(first + CHUNK - 1, n))) > 0 then
        any = true
        break
      end
    end
  end
  i, n = 8 + k, 0
  while i <= nargs do
    local id = args[i]
    local last = i + 3 + NNEW + 2 * tonumber(args[i + 3])
    n = n + 1
    if seen[id] then
      results[#results + 1] = 2
    else
      seen[id] = true
      local key = job_keys[n]
      local t = any and key_type(key) or 'none'
      if t == 'hash' then
        results[#results + 1] = record(key)
      elseif t ~= 'none' then
        results[#results + 1] = t
      else
        results[#results + 1] = 1
        fresh = fresh + 1
        jobs[fresh] = {id, key, args[i + 1], args[i + 2], i + 4, last}
      end
    end
    i = last + 1
  end
  if fresh == 0 then
    return results
  end
  -- Every unfinished job is in index (until it is final and evicted), so its size bounds
  -- what unfinished counts: below the limit, the exact count (seven commands) is not needed.
  if redis.call('ZCARD', keys[INDEX]) + fresh > limit then
    local current = unfinished(keys, prefix)
    if current + fresh > limit then
      return {'full', current}
    end
  end
  local ids, queues, scheduled, indexed = {}, {}, {}, {}
  -- The batch's sequence numbers at once (no other call runs meanwhile); INCR and SET, the
  -- commands of the documented ACL rule.
  local seq = redis.call('INCR', keys[SEQ]) - 1
  if fresh > 1 then
    redis.call('SET', keys[SEQ], seq + fresh)
  end
  local queued = 0
  local record_args = {unpack(NEW_PAIRS)}  -- made at its full size at once
  for n, job in ipairs(jobs) do
    local id = job[1]
    local first, last = job[5], job[6]
    for f = 1, NNEW do
      record_args[2 * f] = args[first + f - 1]
    end
    local m = 2 * NNEW
    for a = first + NNEW, last do
      m = m + 1
      record_args[m] = args[a]
    end
    redis.call('HSET', job[2], unpack(record_args, 1, m))
    ids[n] = id
    indexed[2 * n - 1] = seq + n
    indexed[2 * n] = id
    if job[4] == '' then
      local p = tonumber(job[3])
      local queue = queues[p]
      if not queue then
        queue = {}
        queues[p] = queue
      end
      queue[#queue + 1] = id
      queued = queued + 1
    else
      scheduled[#scheduled + 1] = job[4]
      scheduled[#scheduled + 1] = id
    end
  end
  -- Ids of finished jobs whose key expired and that evict has not forgotten yet: their entry
  -- in finished (and size) must not outlive them and evict the new jobs.
  if chunked('ZREM', keys[FINISHED], ids) > 0 then
    for first = 1, fresh, CHUNK do
      drop_sizes(keys, {unpack(ids, first, math.min(first + CHUNK - 1, fresh))})
    end
  end
  for p, queue in pairs(queues) do
    chunked('RPUSH', keys[p], queue)
  end
  chunked('ZADD', keys[SCHED], scheduled)
  chunked('ZADD', keys[INDEX], indexed)
  redis.call('HINCRBY', keys[STATS], 'submitted', fresh == 1 and '1' or fresh)
  if queued > 0 and k > 0 then
    leased = lease(keys, prefix, now, lease_ms, node, {unpack(args, 8, 7 + k)}, aging)
    results[2] = leased
  end
  -- Jobs queued here and not taken at once: wake idle nodes for them.
  wake(keys, queued - #leased / 3)
  if #results == 3 and fresh == 1 and #leased == 0 then
    return 1  -- one job, created, nothing leased: a submission's usual answer, in short
  end
  return results
end

--[[ heartbeat: register the node as live and extend the leases it holds.
ARGV: prefix, lease_ms, node, node_ttl_ms, node info (JSON), then id, token pairs.
The node's entry (prefix.."node:"..node, the info with a TTL) and its deadline in nodes are
renewed; entries past their deadline are pruned.
Returns one code per pair: 0 lease lost, 1 renewed, 2 renewed and cancellation requested.
]]
local function heartbeat(keys, args)
  local prefix, lease_ms, node, node_ttl = args[1], tonumber(args[2]), args[3], tonumber(args[4])
  local now = server_ms()
  local deadline = now + lease_ms
  redis.call('ZREMRANGEBYSCORE', keys[NODES], '-inf', now)
  redis.call('ZADD', keys[NODES], now + node_ttl, node)
  redis.call('SET', prefix .. 'node:' .. node, args[5], 'PX', node_ttl)
  local out = {}
  for i = 6, #args, 2 do
    local id, token = args[i], args[i + 1]
    local cur = fields(job_key(prefix, id), 'tok', 'status', 'cxl') or {}
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
ARGV: prefix, now, failed_s, ttl_s, max_jobs, max_bytes, node, lease_ms, aging, k, worker_id
JSON x k, then per outcome: id, token, kind, value, at. A job counted under a limit frees its
slot whatever the outcome, before it is queued again if it is.
kind: c completed (value = result JSON), f failed (value = error JSON), r retry (value =
error JSON, at = run_at), x cancelled, l released (back to the front of its queue), u
un-fetched (as l, and the attempt is not counted).
Returns {statuses, leased}: statuses has one entry per outcome: the job's status (JSON) after
it, also when an earlier try of the same call already recorded it (a status that is not one
means a corrupt record); else the job's current record (the lease was lost: nothing was
changed), or false for a key of another type than hash. leased is what lease returns.
]]
local function finish(keys, args)
  local prefix, now, failed_s, ttl_s, max_jobs = args[1], args[2], args[3], args[4], args[5]
  local max_bytes, node, lease_ms, aging = args[6], args[7], tonumber(args[8]), tonumber(args[9])
  local k = tonumber(args[10])
  local out = {}
  local queued = 0
  for i = 11 + k, #args, 5 do
    local id, token, kind, value, at = args[i], args[i + 1], args[i + 2], args[i + 3],
      args[i + 4]
    local key = job_key(prefix, id)
    local cur = fields(key, 'tok', 'status', 'cxl', 'priority', 'lim')
    if not cur then
      out[#out + 1] = false
    elseif cur[1] ~= token then
      out[#out + 1] = record(key)
    elseif cur[2] ~= RUNNING then
      out[#out + 1] = cur[2] or ''
    else
      redis.call('ZREM', keys[RUN], id)
      if cur[5] then
        free_slot(keys, prefix, cur[5], key, now)
      end
      local priority = queue_of(cur[4])
      if kind == 'c' then
        finalize(keys, prefix, id, key, COMPLETED, now, ttl_s, failed_s, 'result', value)
      elseif kind == 'f' then
        finalize(keys, prefix, id, key, FAILED, now, ttl_s, failed_s, 'error', value)
      elseif kind == 'x' or cur[3] then
        -- A cancellation was requested: a retry or a hand-back ends it instead.
        if kind == 'r' then
          finalize(keys, prefix, id, key, CANCELLED, now, ttl_s, failed_s, 'error', value)
        else
          finalize(keys, prefix, id, key, CANCELLED, now, ttl_s, failed_s)
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
          redis.pcall('HINCRBY', key, 'attempts', -1)
        end
        redis.call('LPUSH', keys[priority], id)
        queued = queued + 1
      end
      out[#out + 1] = redis.call('HGET', key, 'status')
    end
  end
  local leased = lease(keys, prefix, now, lease_ms, node, {unpack(args, 11, 10 + k)}, aging)
  -- Jobs queued again here and not taken at once: wake idle nodes for them.
  wake(keys, queued - #leased / 3)
  evict(keys, prefix, now, ttl_s, max_jobs, max_bytes)
  return {out, leased}
end

--[[ cancel: ARGV: prefix, id, now, failed_s, ttl_s, max_jobs, max_bytes.
Returns {'missing'}, {'final', status}, {'running', record} (flagged and announced on the
cancel channel; the node running it stops it), {'cancelled', record}, or {'corrupt'} (an
unknown status or a key of another type: nothing was changed, the node quarantines it).
]]
local function cancel(keys, args)
  local prefix, id, now, failed_s, ttl_s, max_jobs = args[1], args[2], args[3], args[4], args[5],
    args[6]
  local max_bytes = args[7]
  local key = job_key(prefix, id)
  local cur = fields(key, 'status', 'priority', 'type')
  if not cur then
    return {'corrupt'}
  end
  local status = cur[1]
  if not status then
    return {'missing'}
  end
  if FINAL[status] then
    return {'final', status}
  end
  if not KNOWN[status] then
    return {'corrupt'}
  end
  if status == RUNNING then
    redis.call('HSET', key, 'cxl', '1')
    redis.call('PUBLISH', prefix .. 'cancel', id)
    return {'running', record(key)}
  end
  if status == PENDING then
    -- Queued, or held back by a limit of its type.
    if redis.call('LREM', keys[queue_of(cur[2])], 1, id) == 0 and cur[3] then
      redis.call('ZREM', held_key(prefix, cur[3]), id)
    end
  else
    redis.call('ZREM', keys[SCHED], id)
  end
  finalize(keys, prefix, id, key, CANCELLED, now, ttl_s, failed_s)
  local cancelled = record(key)
  evict(keys, prefix, now, ttl_s, max_jobs, max_bytes)
  -- A job larger than max_bytes on its own is evicted at once: its record is read before.
  return {'cancelled', cancelled}
end

--[[ promote: move due scheduled jobs to the end of their queue, each exactly once, and put
back the jobs held by a rate whose window has opened. ARGV: prefix, now. Returns {moved, the
next run_at or rate opening, or false}.
]]
local function promote(keys, args)
  local prefix, now = args[1], args[2]
  local due = redis.call('ZRANGEBYSCORE', keys[SCHED], '-inf', now, 'LIMIT', 0, BATCH)
  local moved = 0
  for _, id in ipairs(due) do
    redis.call('ZREM', keys[SCHED], id)
    local key = job_key(prefix, id)
    local priority = redis.pcall('HGET', key, 'priority')
    if type(priority) == 'table' then
      -- Not a hash: queued all the same, for the node that leases it to quarantine it.
      redis.call('RPUSH', keys[2], id)
      moved = moved + 1
    elseif priority then
      redis.call('HSET', key, 'status', PENDING)
      redis.call('RPUSH', keys[queue_of(priority)], id)
      moved = moved + 1
    end
  end
  wake(keys, moved)
  local nxt = redis.call('ZRANGE', keys[SCHED], 0, 0, 'WITHSCORES')
  local nxt_at = nxt[2] or false
  if redis.call('EXISTS', keys[LIMDUE]) == 1 then
    for _, t in ipairs(redis.call('ZRANGEBYSCORE', keys[LIMDUE], '-inf', now, 'LIMIT', 0, BATCH)) do
      refill(keys, prefix, t, parse_limit(redis.call('HGET', keys[LIMITS], t)), now)
    end
    local due = redis.call('ZRANGE', keys[LIMDUE], 0, 0, 'WITHSCORES')
    -- As stored (the node's repr), so no digit is lost to Lua's number formatting.
    if due[2] and (not nxt_at or tonumber(due[2]) < tonumber(nxt_at)) then
      nxt_at = due[2]
    end
  end
  return {moved, nxt_at}
end

--[[ reap: leases past their deadline (server time) lose their job: it goes back to the front
of its queue, or ends cancelled (cancellation was requested) or failed (no attempts left).
The token is cleared so the node that lost the lease cannot record anything any more.
ARGV: prefix, now, failed_s, ttl_s, max_jobs, max_bytes, error JSON for jobs out of attempts.
Returns {reaped ids, corrupt ids}: a record that cannot be reaped safely (a key of another type,
an unknown status, a priority or attempts that are not what they should be) stays in running,
looked at again CORRUPT_RETRY_MS later, for the node to quarantine.
]]
local function reap(keys, args)
  local prefix, now, failed_s, ttl_s, max_jobs, max_bytes, error = args[1], args[2], args[3],
    args[4], args[5], args[6], args[7]
  local now_ms = server_ms()
  local expired = redis.call('ZRANGEBYSCORE', keys[RUN], '-inf', now_ms, 'LIMIT', 0, BATCH)
  local queued = 0
  local reaped, corrupt = {}, {}
  for _, id in ipairs(expired) do
    local key = job_key(prefix, id)
    local cur = fields(key, 'status', 'cxl', 'priority', 'attempts', 'max_attempts', 'lim')
    local status = cur and cur[1]
    if not cur or (status and not KNOWN[status]) or (status == RUNNING and not (
        QUEUE[cur[3]] and tonumber(cur[4]) and tonumber(cur[5]))) then
      corrupt[#corrupt + 1] = id
      redis.call('ZADD', keys[RUN], now_ms + CORRUPT_RETRY_MS, id)
    else
      reaped[#reaped + 1] = id
      redis.call('ZREM', keys[RUN], id)
      if status == RUNNING then
        redis.call('HSET', key, 'tok', '')
        redis.call('HINCRBY', keys[STATS], 'leases_expired', 1)
        if cur[6] then
          -- The node died (or stalled) with the job: its slot is free again.
          free_slot(keys, prefix, cur[6], key, now)
        end
        if cur[2] then
          finalize(keys, prefix, id, key, CANCELLED, now, ttl_s, failed_s)
        elseif tonumber(cur[4]) >= tonumber(cur[5]) then
          finalize(keys, prefix, id, key, FAILED, now, ttl_s, failed_s, 'error', error)
        else
          redis.call('HSET', key, 'status', PENDING)
          redis.call('LPUSH', keys[QUEUE[cur[3]]], id)
          queued = queued + 1
        end
      end
    end
  end
  wake(keys, queued)
  if #reaped > 0 then
    evict(keys, prefix, now, ttl_s, max_jobs, max_bytes)
  end
  return {reaped, corrupt}
end

-- progress: ARGV: prefix, id, token, value JSON. Returns 1 if recorded (lease still held).
local function progress(keys, args)
  local key = job_key(args[1], args[2])
  local cur = fields(key, 'tok', 'status') or {}
  if cur[1] == args[3] and cur[2] == RUNNING then
    redis.call('HSET', key, 'progress', args[4])
    return 1
  end
  return 0
end

-- watch: ARGV: prefix, id. The record (false if none; the key's type if it is not a hash);
-- unless final, its end will be PUBLISHed on the done channel.
local function watch(keys, args)
  local key = job_key(args[1], args[2])
  local status = redis.pcall('HGET', key, 'status')
  if type(status) == 'table' then
    return key_type(key)
  end
  if not status then
    return false
  end
  if not FINAL[status] then
    redis.call('HSET', keys[WAITERS], args[2], '1')
  end
  return record(key)
end

-- counts: {pending low, normal, high, urgent, scheduled, running}; pending includes the jobs
-- held back by a limit.
local function counts(keys, args)
  local out = {
    redis.call('LLEN', keys[1]), redis.call('LLEN', keys[2]), redis.call('LLEN', keys[3]),
    redis.call('LLEN', keys[4]), redis.call('ZCARD', keys[SCHED]), redis.call('ZCARD', keys[RUN]),
  }
  if redis.call('EXISTS', keys[LIMITS]) == 1 then
    local _, per = held_counts(keys, args[1])
    for p = 1, 4 do
      out[p] = out[p] + per[p]
    end
  end
  return out
end

--[[ set_limits: the limits of job types, as a node's registry has them (at its start).
ARGV: prefix, now, then per type: type JSON, "concurrency,count,period" ('' = no limits: its
held jobs all go back to their queues). Held jobs that may start under the new limits go back
to the front of their queues. Returns 1.
]]
local function set_limits(keys, args)
  local prefix, now = args[1], args[2]
  for i = 3, #args, 2 do
    local t, spec = args[i], args[i + 1]
    if spec == '' then
      redis.call('HDEL', keys[LIMITS], t)
      refill(keys, prefix, t, nil, now)
    else
      redis.call('HSET', keys[LIMITS], t, spec)
      refill(keys, prefix, t, parse_limit(spec), now)
    end
  end
  return 1
end

-- limit_figures: per limited type {type JSON, spec, running, held}, flattened.
local function limit_figures(keys, args)
  local out = {}
  local flat = redis.call('HGETALL', keys[LIMITS])
  for i = 1, #flat, 2 do
    local t = flat[i]
    out[#out + 1] = t
    out[#out + 1] = flat[i + 1]
    out[#out + 1] = tonumber(redis.call('HGET', keys[LIMRUN], t)) or 0
    out[#out + 1] = redis.call('ZCARD', held_key(args[1], t))
  end
  return out
end

--[[ list: newest first. ARGV: prefix, status JSON or '', type JSON or '', limit, scan_max.
Returns the matching records, each with its id appended; index entries whose job has expired
are dropped. Records with an
unknown status are returned whatever the filters, and keys of another type than hash as their
id (a string): the node quarantines them, then filters.
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
      local cur = fields(key, 'status', 'type')
      if not cur then
        out[#out + 1] = id
      elseif not cur[1] then
        gone[#gone + 1] = id
      elseif not KNOWN[cur[1]] or
          ((status == '' or cur[1] == status) and (jtype == '' or cur[2] == jtype)) then
        local values = record(key)
        values[NFIELDS + 1] = id
        out[#out + 1] = values
      end
      if #out >= limit then
        break
      end
    end
    start = start + page
  end
  for first = 1, #gone, BATCH do
    local chunk = {unpack(gone, first, math.min(first + BATCH - 1, #gone))}
    redis.call('ZREM', keys[INDEX], unpack(chunk))
    redis.call('ZREM', keys[FINISHED], unpack(chunk))
    drop_sizes(keys, chunk)
  end
  return out
end

--[[ quarantine: a record that does not decode becomes a failed job that stays visible.
ARGV: prefix, id, now, ttl_ms, quarantine_ms, then field, value pairs of the salvaged record
(trio_tasks._job.salvage_record). The raw record is kept at prefix.."quarantine:"..id for
quarantine_ms (copied if a hash, renamed otherwise; the first one kept); the job's hash is
replaced by the salvaged record (no token: a lease on it is lost), taken out of the queues,
scheduled and running, kept as a finished job and in the index, counted failed, and its end
announced if awaited. Returns 1 if done; 0 if the id has no key any more (it is only taken out
of the queues and sets) or its record was quarantined already (by another node).
]]
local function quarantine(keys, args)
  local prefix, id, now, ttl_ms, quarantine_ms = args[1], args[2], args[3], args[4], args[5]
  local key, qkey = job_key(prefix, id), prefix .. 'quarantine:' .. id
  local t = key_type(key)
  if t == 'hash' and redis.call('HEXISTS', key, 'qtn') == 1 then
    return 0
  end
  for p = 1, 4 do
    redis.call('LREM', keys[p], 0, id)
  end
  redis.call('ZREM', keys[SCHED], id)
  redis.call('ZREM', keys[RUN], id)
  unhold(keys, prefix, id)
  if t == 'hash' then
    local lim = redis.call('HGET', key, 'lim')
    if lim then
      free_slot(keys, prefix, lim, key, now)
    end
  end
  if t == 'none' then
    return 0
  end
  if redis.call('EXISTS', qkey) == 1 then
    redis.call('DEL', key)
  elseif t == 'hash' then
    redis.call('COPY', key, qkey)
    redis.call('DEL', key)
  else
    redis.call('RENAME', key, qkey)
  end
  redis.call('PEXPIRE', qkey, quarantine_ms)
  redis.call('HSET', key, 'qtn', '1', unpack(args, 6))
  redis.call('PEXPIRE', key, ttl_ms)
  redis.call('ZADD', keys[FINISHED], now, id)
  add_size(keys, id, key)
  if not redis.call('ZSCORE', keys[INDEX], id) then
    redis.call('ZADD', keys[INDEX], redis.call('INCR', keys[SEQ]), id)
  end
  redis.call('HINCRBY', keys[STATS], 'failed', 1)
  if redis.call('HDEL', keys[WAITERS], id) == 1 then
    redis.call('PUBLISH', prefix .. 'done', id .. '\n' .. record_json(key))
  end
  return 1
end

--[[ retry: queue a failed or cancelled job again under its id (POST /jobs/{id}/retry).
ARGV: prefix, id, max_unfinished, completed_at as the node read it, then field, value pairs of
the record to queue (trio_tasks._job.requeued). Returns {'missing'}, {'corrupt'} (a key of
another type or an unknown status), {'state', status} (not failed or cancelled, or finished
again since the node read it), {'full', unfinished} or {'ok', record}.
]]
local function retry(keys, args)
  local prefix, id, max_unfinished, seen = args[1], args[2], tonumber(args[3]), args[4]
  local key = job_key(prefix, id)
  local cur = fields(key, 'status', 'completed_at', 'priority')
  if not cur then
    return {'corrupt'}
  end
  local status = cur[1]
  if not status then
    return {'missing'}
  end
  if not KNOWN[status] then
    return {'corrupt'}
  end
  if (status ~= FAILED and status ~= CANCELLED) or cur[2] ~= seen then
    return {'state', status}
  end
  local current = unfinished(keys, prefix)
  if current + 1 > max_unfinished then
    return {'full', current}
  end
  redis.call('HSET', key, unpack(args, 5))
  redis.call('HDEL', key, 'tok', 'cxl', 'node', 'qtn', 'lim')
  redis.call('PERSIST', key)
  redis.call('ZREM', keys[FINISHED], id)
  drop_sizes(keys, {id})
  redis.call('RPUSH', keys[queue_of(cur[3])], id)
  redis.call('HINCRBY', keys[STATS], 'requeued', 1)
  wake(keys, 1)
  return {'ok', record(key)}
end

-- leave: ARGV: prefix, node. Takes the node out of the registry (a clean stop).
local function leave(keys, args)
  redis.call('ZREM', keys[NODES], args[2])
  redis.call('DEL', args[1] .. 'node:' .. args[2])
  return 1
end

-- cluster: ARGV: prefix. {stats (HGETALL), {info of each live node}}.
local function cluster(keys, args)
  local live = redis.call('ZRANGEBYSCORE', keys[NODES], '(' .. server_ms(), '+inf')
  local nodes = {}
  for _, node in ipairs(live) do
    local info = redis.pcall('GET', args[1] .. 'node:' .. node)
    if type(info) == 'string' then
      nodes[#nodes + 1] = info
    end
  end
  return {redis.call('HGETALL', keys[STATS]), nodes}
end

-- Every function gets its namespace's keys from the prefix (see namespaced).
redis.register_function('tt8_enqueue', namespaced(enqueue))
redis.register_function('tt8_fetch', namespaced(fetch))
redis.register_function('tt8_heartbeat', namespaced(heartbeat))
redis.register_function('tt8_finish', namespaced(finish))
redis.register_function('tt8_cancel', namespaced(cancel))
redis.register_function('tt8_promote', namespaced(promote))
redis.register_function('tt8_reap', namespaced(reap))
redis.register_function('tt8_progress', namespaced(progress))
redis.register_function('tt8_watch', namespaced(watch))
redis.register_function('tt8_list', namespaced(list))
redis.register_function('tt8_quarantine', namespaced(quarantine))
redis.register_function('tt8_leave', namespaced(leave))
redis.register_function('tt8_retry', namespaced(retry))
redis.register_function('tt8_set_limits', namespaced(set_limits))
-- Read-only: allowed on replicas and in read-only scripts.
redis.register_function{function_name = 'tt8_counts', callback = namespaced(counts), flags = {'no-writes'}}
redis.register_function{function_name = 'tt8_cluster', callback = namespaced(cluster), flags = {'no-writes'}}
redis.register_function{function_name = 'tt8_limit_figures', callback = namespaced(limit_figures),
  flags = {'no-writes'}}
