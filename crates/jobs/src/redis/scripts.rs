//! The Lua scripts of the Redis backend. Every state change of a partition
//! is one script run, so it is atomic (two promoters or reclaimers can never
//! move one job twice) and costs one round trip however many jobs it moves.
//!
//! Conventions shared by all scripts: `KEYS[1]` is the partition's counts
//! hash (it carries the partition's hash tag, so a Redis Cluster routes the
//! script to the node owning the partition); `ARGV[1]` is the partition's key
//! prefix (`<namespace>:{p<N>}:`), from which the script derives the other
//! keys of the same hash tag. Replies are arrays of strings (Lua `false`
//! would truncate an array, so absent fields become `''`).
//!
//! Job hash fields: `spec` (immutable JSON, written once; it holds the kind), `pr`
//! (priority rank), `st` (status), `run`, `att`, `del`, `sta`, `fin`, `err`,
//! `res`, `prog`, `ent` (current stream entry), `dent` (dead-letter entry).
//! `att` and `del` are first written when a lease ends (absent means 0), so
//! submission writes the fewest fields. `ent` means something only while
//! the status is `queued` (every reader checks `st` first), so completion
//! leaves it in place rather than spend a write clearing it.
//!
//! **Running is not written to the job hash.** A leased job keeps `st =
//! queued`; what makes it running is its field in the partition's `leases`
//! hash (`rank:entry id → job id|deliveries|attempts|started_at|lease_ms`;
//! entry ids are unique per stream only),
//! written for a whole fetch batch in one HSET and removed by whatever ends
//! the lease, in the same script that acknowledges the stream entry. So a
//! field exists exactly while its entry is pending. Readers (`get`, `list`,
//! `cancel`) find it through the job's `ent`. A stream entry carries the
//! counters a lease needs (`j` job id, `o` order key and, when not zero, as
//! after a retry or reclaim, `d` deliveries so far and `a` attempts), so the
//! lease script touches no job hash: the backend reads the leased jobs'
//! immutable spec and run fields afterwards with plain pipelined HMGETs,
//! outside Lua. Each job thus costs one hash write at submission and one at
//! completion. Entries stay small (no payload): every stream command (XADD,
//! XREADGROUP, XRANGE, XDEL) costs more with bigger entries.

/// Helpers prepended to every script.
const PRELUDE: &str = r#"
local NAMES = {'critical', 'high', 'medium', 'low'}
local GROUP = 'workers'
local function skey(pfx, r) return pfx .. 'stream:' .. NAMES[tonumber(r) + 1] end
local function lkey(pfx) return pfx .. 'leases' end
-- The field of a lease: rank and entry id (entry ids are unique per
-- stream only: two priorities of a partition can hold the same id).
local function lfield(r, eid) return r .. ':' .. eid end
-- A lease (field: rank:entry id) is job id|deliveries|attempts|started_at|lease_ms.
local function parse_lease(r, eid, v)
  if not v then return nil end
  local jid, del, att, sta, lms = string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  if not jid then return nil end
  return {field = lfield(r, eid), eid = eid, jid = jid, del = tonumber(del) or 0, att = tonumber(att) or 0, sta = sta, lms = tonumber(lms) or 0}
end
local function lease_value(l)
  return l.jid .. '|' .. l.del .. '|' .. l.att .. '|' .. l.sta .. '|' .. l.lms
end
-- The lease on entry eid of rank r if it is job jid's, else nil.
local function held(pfx, r, jid, eid)
  local l = parse_lease(r, eid, redis.call('HGET', lkey(pfx), lfield(r, eid)))
  if l and l.jid == jid then return l end
  return nil
end
local function chunked(cmd, key, extra, items)
  local i = 1
  while i <= #items do
    local j = math.min(i + 499, #items)
    if extra then
      redis.call(cmd, key, extra, unpack(items, i, j))
    else
      redis.call(cmd, key, unpack(items, i, j))
    end
    i = j + 1
  end
end
-- HMGET of any number of fields (unpack is limited to a few thousand values).
local function hmget_all(key, fields)
  local vals, i = {}, 1
  while i <= #fields do
    local j = math.min(i + 499, #fields)
    local part = redis.call('HMGET', key, unpack(fields, i, j))
    for k = 1, j - i + 1 do vals[i + k - 1] = part[k] end
    i = j + 1
  end
  return vals
end
local function incr(counts, field, n)
  if n ~= 0 then redis.call('HINCRBY', counts, field, n) end
end
-- Adds a fresh stream entry for a job whose hash holds its current
-- deliveries and attempts (the entry carries them to the next lease).
local function requeue(pfx, jk, jid, r, now, seq)
  local h = redis.call('HMGET', jk, 'del', 'att')
  local e = redis.call('XADD', skey(pfx, r), '*', 'j', jid, 'o', now .. '-' .. seq, 'd', h[1] or '0', 'a', h[2] or '0')
  redis.call('HSET', jk, 'st', 'queued', 'ent', e)
  redis.call('HDEL', jk, 'sta', 'prog', 'fin')
  return e
end
-- Ends a held lease: acknowledges and deletes its entry, forgets the lease
-- and stores what it changed (deliveries, start time) in the job hash.
local function end_lease(pfx, r, jk, jid, l)
  local s = skey(pfx, r)
  redis.call('XACK', s, GROUP, l.eid)
  redis.call('XDEL', s, l.eid)
  redis.call('HDEL', lkey(pfx), l.field)
  redis.call('HSET', jk, 'del', l.del, 'sta', l.sta)
end
local function last_delivered(s)
  local groups = redis.pcall('XINFO', 'GROUPS', s)
  if type(groups) ~= 'table' or groups.err then return '0-0' end
  for _, g in ipairs(groups) do
    local name, last = nil, nil
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == GROUP then return last end
  end
  return '0-0'
end
local function to_dead(pfx, jk, jid, now, err)
  local d = redis.call('XADD', pfx .. 'dead', '*', 'j', jid)
  redis.call('HSET', jk, 'st', 'dead', 'fin', now, 'err', err, 'dent', d)
  redis.call('HDEL', jk, 'ent')
end
"#;

/// Creates the consumer group of every priority stream (idempotent).
/// ARGV: pfx.
const ENSURE_GROUPS: &str = r#"
local pfx = ARGV[1]
for r = 0, 3 do
  local res = redis.pcall('XGROUP', 'CREATE', skey(pfx, r), GROUP, '0', 'MKSTREAM')
  if type(res) == 'table' and res.err and not string.find(res.err, 'BUSYGROUP') then
    return redis.error_reply(res.err)
  end
end
return 'OK'
"#;

/// Stores a batch. ARGV: pfx, now, max_live, idem_ttl_ms, then 7 per job:
/// id, rank, scheduled (1/0), run_at, spec, idempotency key (or ''),
/// sequence (FIFO tie-break). Reply per job: '' when added, else the id of
/// the existing job.
const ENQUEUE: &str = r#"
local pfx, now, maxlive, ittl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local counts = KEYS[1]
local c = redis.call('HMGET', counts, 'q0', 'q1', 'q2', 'q3', 'sched', 'retry', 'run')
local live = 0
for i = 1, 7 do live = live + (tonumber(c[i]) or 0) end
local n = (#ARGV - 4) / 7
if live + n > maxlive then
  return redis.error_reply('QUEUEFULL the partition holds ' .. live .. ' live jobs')
end
local out, dq, ds = {}, {0, 0, 0, 0}, 0
for i = 0, n - 1 do
  local b = 4 + i * 7
  local id, r, sched, run = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local spec, idem, seq = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7]
  local jk = pfx .. 'job:' .. id
  local dup = false
  if idem ~= '' then
    local ik = pfx .. 'idem:' .. idem
    dup = redis.call('GET', ik)
    if not dup then
      if ittl > 0 then redis.call('SET', ik, id, 'PX', ittl) else redis.call('SET', ik, id) end
    end
  end
  if dup then
    out[#out + 1] = dup
  elseif redis.call('EXISTS', jk) == 1 then
    out[#out + 1] = id
  else
    out[#out + 1] = ''
    if sched == '1' then
      redis.call('HSET', jk, 'spec', spec, 'pr', r, 'run', run, 'st', 'scheduled')
      redis.call('ZADD', pfx .. 'delayed', run, id)
      ds = ds + 1
    else
      local e = redis.call('XADD', skey(pfx, r), '*', 'j', id, 'o', now .. '-' .. seq)
      redis.call('HSET', jk, 'spec', spec, 'pr', r, 'run', run, 'st', 'queued', 'ent', e)
      local q = tonumber(r) + 1
      dq[q] = dq[q] + 1
    end
  end
end
for r = 0, 3 do incr(counts, 'q' .. r, dq[r + 1]) end
incr(counts, 'sched', ds)
return out
"#;

/// Lists the order keys of up to `k` undelivered entries, highest priority
/// first. ARGV: pfx, k. Reply: rank, order, rank, order, ...
///
/// The counts hash says how many entries each stream holds undelivered
/// (every XADD of a queued job increments `q<r>`, every lease and cancel
/// decrements it, in the same script), so streams with none are skipped
/// without asking the consumer group where it stands: an idle partition or
/// priority costs one HMGET instead of XINFO GROUPS + XRANGE.
const PEEK: &str = r#"
local pfx, left = ARGV[1], tonumber(ARGV[2])
local q = redis.call('HMGET', KEYS[1], 'q0', 'q1', 'q2', 'q3')
local out = {}
for r = 0, 3 do
  if left <= 0 then break end
  local s = skey(pfx, r)
  if (tonumber(q[r + 1]) or 0) > 0 then
    local es = redis.call('XRANGE', s, '(' .. last_delivered(s), '+', 'COUNT', left)
    local rank = tostring(r)
    for _, e in ipairs(es) do
      local f = e[2]
      local order = ''
      for i = 1, #f, 2 do if f[i] == 'o' then order = f[i + 1] end end
      out[#out + 1] = rank
      out[#out + 1] = order
    end
    left = left - #es
  end
end
return out
"#;

/// Leases up to c_r entries of each priority stream to a consumer.
/// ARGV: pfx, consumer, now, lease_ms, c0, c1, c2, c3. Reply: 6 per lease:
/// rank, entry id, job id, order, deliveries (this one included), attempts.
///
/// No job hash is read or written: the entries carry the counters, and the
/// leases of the whole batch are recorded in one HSET. Every undelivered
/// entry is its job's current one (enqueue, promotion and requeue add an
/// entry only for a job in no stream; cancel deletes the entry it ends).
const CLAIM: &str = r#"
local pfx, consumer, now, lms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local counts = KEYS[1]
local out, leases, running = {}, {}, 0
for r = 0, 3 do
  local want = tonumber(ARGV[5 + r])
  if want > 0 then
    local s = skey(pfx, r)
    local res = redis.pcall('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', want, 'STREAMS', s, '>')
    if type(res) == 'table' and res.err then
      if string.find(res.err, 'NOGROUP') then
        redis.call('XGROUP', 'CREATE', s, GROUP, '0', 'MKSTREAM')
        res = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', want, 'STREAMS', s, '>')
      else
        return redis.error_reply(res.err)
      end
    end
    local taken = 0
    if res then
      local rank = tostring(r)
      for _, e in ipairs(res[1][2]) do
        local eid, f = e[1], e[2]
        local jid, order, del, att = '', '', 0, '0'
        for i = 1, #f, 2 do
          local k = f[i]
          if k == 'j' then jid = f[i + 1] elseif k == 'o' then order = f[i + 1]
          elseif k == 'd' then del = tonumber(f[i + 1]) or 0 elseif k == 'a' then att = f[i + 1] end
        end
        del = tostring(del + 1)
        leases[#leases + 1] = rank .. ':' .. eid
        leases[#leases + 1] = jid .. '|' .. del .. '|' .. att .. '|' .. now .. '|' .. lms
        taken = taken + 1
        out[#out + 1] = rank
        out[#out + 1] = eid
        out[#out + 1] = jid
        out[#out + 1] = order
        out[#out + 1] = del
        out[#out + 1] = att
      end
    end
    incr(counts, 'q' .. r, -taken)
    running = running + taken
  end
end
if #leases > 0 then chunked('HSET', lkey(pfx), nil, leases) end
incr(counts, 'run', running)
return out
"#;

/// Completes leases. ARGV: pfx, now, finished_ttl_ms (0 = keep),
/// index_len, garbage_limit, then 7 per job: rank, entry id, job id, result
/// JSON, and from the receipt the attempts, deliveries and start time of the
/// lease ('' if the receipt predates them). Reply per job: '1' done, '0'
/// lease lost.
///
/// One HMGET reads the batch's leases; a job that holds the lease on the
/// receipt's entry gets one HSET (status, result, attempts, deliveries,
/// start time). A job named twice in a batch is completed once.
///
/// Acknowledged entries are not deleted one by one (XDEL seeks each entry
/// inside its stream node, the dearest command of the path): the stream is
/// trimmed below its oldest pending entry (or, with none pending, up to the
/// group's last delivered entry), since everything there is acknowledged.
/// An old pending entry (a long job) holds later acknowledged entries back;
/// once more than `garbage_limit` of them wait, the batch's entries are
/// deleted one by one as before, so the backlog stays bounded.
const COMPLETE: &str = r#"
local pfx, now, ttl, cap, garbage = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local counts, lk = KEYS[1], lkey(pfx)
local fields = {}
for b = 6, #ARGV, 7 do fields[#fields + 1] = lfield(ARGV[b], ARGV[b + 1]) end
local vals = hmget_all(lk, fields)
local acks, gone = {{}, {}, {}, {}}, {}
local out, done, seen = {}, {}, {}
local n = 0
for b = 6, #ARGV, 7 do
  n = n + 1
  local r, eid, jid, res = tonumber(ARGV[b]), ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local att, del, sta = ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]
  local v = vals[n]
  if v and not seen[fields[n]] and r and r >= 0 and r <= 3 and string.sub(v, 1, #jid + 1) == jid .. '|' then
    if att == '' or del == '' or sta == '' then
      local l = parse_lease(r, eid, v)
      att, del, sta = l.att, l.del, l.sta
    end
    seen[fields[n]] = true
    table.insert(acks[r + 1], eid)
    gone[#gone + 1] = fields[n]
    local jk = pfx .. 'job:' .. jid
    redis.call('HSET', jk, 'st', 'completed', 'fin', now, 'res', res, 'att', tonumber(att) + 1, 'del', del, 'sta', sta)
    if ttl > 0 then redis.call('PEXPIRE', jk, ttl) end
    done[#done + 1] = jid
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
end
if #done == 0 then return out end
incr(counts, 'run', -#done)
incr(counts, 'done', #done)
local c = redis.call('HMGET', counts, 'q0', 'q1', 'q2', 'q3', 'run')
local running = tonumber(c[5]) or 0
chunked('HDEL', lk, nil, gone)
for r = 0, 3 do
  local acked = acks[r + 1]
  if #acked > 0 then
    local s = skey(pfx, r)
    chunked('XACK', s, GROUP, acked)
    local first = redis.call('XPENDING', s, GROUP, '-', '+', 1)
    if first[1] then
      redis.call('XTRIM', s, 'MINID', first[1][1])
    else
      local last = last_delivered(s)
      local ms, sq = string.match(last, '^(%d+)-(%d+)$')
      if ms then redis.call('XTRIM', s, 'MINID', ms .. '-' .. (tonumber(sq) + 1)) end
    end
    if redis.call('XLEN', s) - (tonumber(c[r + 1]) or 0) - running > garbage then
      chunked('XDEL', s, nil, acked)
    end
  end
end
local idx = pfx .. 'finished:completed'
chunked('LPUSH', idx, nil, done)
redis.call('LTRIM', idx, 0, cap - 1)
return out
"#;

/// Records a failed attempt. ARGV: pfx, now, rank, entry id, job id,
/// error, 'retry' or 'dead', retry time. Reply: '1' done, '0' lease lost.
const FAIL: &str = r#"
local pfx, now, r, eid, jid, err, mode, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local counts = KEYS[1]
local jk = pfx .. 'job:' .. jid
local l = held(pfx, r, jid, eid)
if not l then return '0' end
end_lease(pfx, r, jk, jid, l)
redis.call('HSET', jk, 'att', l.att + 1)
incr(counts, 'run', -1)
if mode == 'retry' then
  redis.call('HSET', jk, 'st', 'failed', 'run', at, 'err', err)
  redis.call('HDEL', jk, 'ent')
  redis.call('ZADD', pfx .. 'delayed', at, jid)
  incr(counts, 'retry', 1)
else
  to_dead(pfx, jk, jid, now, err)
  incr(counts, 'dead', 1)
end
return '1'
"#;

/// Hands leases back, ready at once. ARGV: pfx, now, seq_base, then 3 per
/// job: rank, entry id, job id. Reply per job: '1' or '0'.
const RELEASE: &str = r#"
local pfx, now, seq = ARGV[1], ARGV[2], tonumber(ARGV[3])
local counts = KEYS[1]
local out, i = {}, 0
for b = 4, #ARGV, 3 do
  local r, eid, jid = tonumber(ARGV[b]), ARGV[b + 1], ARGV[b + 2]
  local jk = pfx .. 'job:' .. jid
  local l = held(pfx, r, jid, eid)
  if l then
    end_lease(pfx, r, jk, jid, l)
    requeue(pfx, jk, jid, r, now, seq + i)
    i = i + 1
    incr(counts, 'run', -1)
    incr(counts, 'q' .. r, 1)
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
end
return out
"#;

/// Renews leases: resets the entry's idle time (XCLAIM JUSTID) and records
/// the new lease length. ARGV: pfx, lease_ms, then 4 per job: rank, entry
/// id, job id, consumer. Reply per job: '1' or '0'.
const RENEW: &str = r#"
local pfx, lms = ARGV[1], ARGV[2]
local out = {}
for b = 3, #ARGV, 4 do
  local r, eid, jid, consumer = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local l = held(pfx, r, jid, eid)
  if l then
    redis.call('XCLAIM', skey(pfx, r), GROUP, consumer, 0, eid, 'JUSTID')
    l.lms = lms
    redis.call('HSET', lkey(pfx), l.field, lease_value(l))
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
end
return out
"#;

/// Stores progress. ARGV: pfx, rank, entry id, job id, value. Reply '1' or '0'.
const PROGRESS: &str = r#"
local pfx, r, eid, jid, v = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not held(pfx, r, jid, eid) then return '0' end
redis.call('HSET', pfx .. 'job:' .. jid, 'prog', v)
return '1'
"#;

/// Moves due delayed jobs and retries to their stream: range, add, remove,
/// all in one script so concurrent promoters cannot queue a job twice.
/// ARGV: pfx, now, seq_base, limit. Reply: number moved.
const PROMOTE: &str = r#"
local pfx, now, seq, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local counts = KEYS[1]
local z = pfx .. 'delayed'
local due = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, limit)
local moved = 0
for i, jid in ipairs(due) do
  local jk = pfx .. 'job:' .. jid
  local h = redis.call('HMGET', jk, 'st', 'pr')
  if h[1] == 'scheduled' or h[1] == 'failed' then
    requeue(pfx, jk, jid, h[2], now, seq + i)
    incr(counts, h[1] == 'scheduled' and 'sched' or 'retry', -1)
    incr(counts, 'q' .. h[2], 1)
    moved = moved + 1
  end
end
if #due > 0 then chunked('ZREM', z, nil, due) end
return tostring(moved)
"#;

/// Returns entries idle longer than their lease to their stream, or to the
/// dead letters after `max_deliveries`. Idle time is measured by Redis
/// (reset by delivery and by RENEW), so worker clocks do not matter. The
/// leases of a whole XPENDING page are read in one HMGET, so leases still
/// running cost no command each.
/// ARGV: pfx, now, seq_base, max_deliveries, scan_limit.
/// Reply: 2 per job: job id, '1' if dead else '0' (the caller reads kinds
/// from the specs: this path is rare, submission is not).
const RECLAIM: &str = r#"
local pfx, now, seq, maxdel, scan = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local counts, lk = KEYS[1], lkey(pfx)
local out, i = {}, 0
for r = 0, 3 do
  local s = skey(pfx, r)
  local pend = redis.pcall('XPENDING', s, GROUP, 'IDLE', 1, '-', '+', scan)
  if type(pend) == 'table' and not pend.err and #pend > 0 then
    local fields = {}
    for k, p in ipairs(pend) do fields[k] = lfield(r, p[1]) end
    local vals = hmget_all(lk, fields)
    for k, p in ipairs(pend) do
      local eid, idle = p[1], tonumber(p[3])
      local l = parse_lease(r, eid, vals[k])
      if not l then
        redis.call('XACK', s, GROUP, eid)
        redis.call('XDEL', s, eid)
      elseif idle >= l.lms then
        local jid = l.jid
        local jk = pfx .. 'job:' .. jid
        end_lease(pfx, r, jk, jid, l)
        incr(counts, 'run', -1)
        local dead = l.del >= maxdel
        if dead then
          to_dead(pfx, jk, jid, now, 'delivered ' .. l.del .. ' times without finishing (its lease expired each time)')
          incr(counts, 'dead', 1)
        else
          requeue(pfx, jk, jid, r, now, seq + i)
          i = i + 1
          incr(counts, 'q' .. r, 1)
        end
        out[#out + 1] = jid
        out[#out + 1] = dead and '1' or '0'
      end
    end
  end
end
return out
"#;

/// Cancels a queued, scheduled or retry-pending job. ARGV: pfx, now, job
/// id, index_len. Reply: 'ok', 'nf' (not found) or the current status.
const CANCEL: &str = r#"
local pfx, now, jid, cap = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local counts = KEYS[1]
local jk = pfx .. 'job:' .. jid
local h = redis.call('HMGET', jk, 'st', 'pr', 'ent')
if not h[1] then return 'nf' end
if h[1] == 'queued' then
  if h[3] and redis.call('HEXISTS', lkey(pfx), lfield(h[2], h[3])) == 1 then return 'running' end
  redis.call('XDEL', skey(pfx, h[2]), h[3])
  incr(counts, 'q' .. h[2], -1)
elseif h[1] == 'scheduled' or h[1] == 'failed' then
  redis.call('ZREM', pfx .. 'delayed', jid)
  incr(counts, h[1] == 'scheduled' and 'sched' or 'retry', -1)
else
  return h[1]
end
redis.call('HSET', jk, 'st', 'cancelled', 'fin', now)
redis.call('HDEL', jk, 'ent')
incr(counts, 'cancel', 1)
local idx = pfx .. 'finished:cancelled'
redis.call('LPUSH', idx, jid)
redis.call('LTRIM', idx, 0, cap - 1)
return 'ok'
"#;

/// Re-queues a dead job. ARGV: pfx, now, seq, job id, reset (1/0).
/// Reply: 'ok', 'nf' or the current status.
const RETRY_DEAD: &str = r#"
local pfx, now, seq, jid, reset = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local counts = KEYS[1]
local jk = pfx .. 'job:' .. jid
local h = redis.call('HMGET', jk, 'st', 'pr', 'dent')
if not h[1] then return 'nf' end
if h[1] ~= 'dead' then return h[1] end
if h[3] then redis.call('XDEL', pfx .. 'dead', h[3]) end
redis.call('HDEL', jk, 'dent')
if reset == '1' then redis.call('HSET', jk, 'att', 0, 'del', 0) end
redis.call('HSET', jk, 'run', now)
requeue(pfx, jk, jid, h[2], now, seq)
incr(counts, 'dead', -1)
incr(counts, 'q' .. h[2], 1)
return 'ok'
"#;

/// Ids of up to `limit` jobs with a status, examining at most `scan`
/// candidates. ARGV: pfx, status, limit, scan. Reply: job ids. A running
/// job is one with a lease (its hash still says `queued`).
const LIST: &str = r#"
local pfx, status, limit, scan = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
local lk = lkey(pfx)
local function consider(jid)
  if #out >= limit then return end
  local h = redis.call('HMGET', pfx .. 'job:' .. jid, 'st', 'ent', 'pr')
  local leased = h[1] == 'queued' and h[2] and h[3] and redis.call('HEXISTS', lk, lfield(h[3], h[2])) == 1
  if status == 'running' then
    if leased then out[#out + 1] = jid end
  elseif not leased and h[1] == status then
    out[#out + 1] = jid
  end
end
local function entry_jobs(es)
  for _, e in ipairs(es) do
    local f = e[2]
    for k = 1, #f, 2 do if f[k] == 'j' then consider(f[k + 1]) end end
  end
end
if status == 'queued' or status == 'running' then
  for r = 0, 3 do
    local s = skey(pfx, r)
    if redis.call('EXISTS', s) == 1 then
      local last = last_delivered(s)
      if status == 'queued' then
        entry_jobs(redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', scan))
      else
        entry_jobs(redis.call('XRANGE', s, '-', last, 'COUNT', scan))
      end
    end
  end
elseif status == 'scheduled' or status == 'failed' then
  for _, jid in ipairs(redis.call('ZRANGE', pfx .. 'delayed', 0, scan - 1)) do consider(jid) end
elseif status == 'dead' then
  entry_jobs(redis.call('XRANGE', pfx .. 'dead', '-', '+', 'COUNT', scan))
else
  for _, jid in ipairs(redis.call('LRANGE', pfx .. 'finished:' .. status, 0, scan - 1)) do consider(jid) end
end
return out
"#;

/// One script, named for errors and logs.
#[derive(Debug)]
pub(crate) struct LuaScript {
    /// Its SHA1, for EVALSHA.
    pub sha: String,
    /// Prelude plus body, for SCRIPT LOAD.
    pub code: String,
}

impl LuaScript {
    fn new(body: &str) -> LuaScript {
        let code = format!("{PRELUDE}{body}");
        let sha = redis::Script::new(&code).get_hash().to_string();
        LuaScript { sha, code }
    }
}

/// All scripts of the backend.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub ensure_groups: LuaScript,
    pub enqueue: LuaScript,
    pub peek: LuaScript,
    pub claim: LuaScript,
    pub complete: LuaScript,
    pub fail: LuaScript,
    pub release: LuaScript,
    pub renew: LuaScript,
    pub progress: LuaScript,
    pub promote: LuaScript,
    pub reclaim: LuaScript,
    pub cancel: LuaScript,
    pub retry_dead: LuaScript,
    pub list: LuaScript,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            ensure_groups: LuaScript::new(ENSURE_GROUPS),
            enqueue: LuaScript::new(ENQUEUE),
            peek: LuaScript::new(PEEK),
            claim: LuaScript::new(CLAIM),
            complete: LuaScript::new(COMPLETE),
            fail: LuaScript::new(FAIL),
            release: LuaScript::new(RELEASE),
            renew: LuaScript::new(RENEW),
            progress: LuaScript::new(PROGRESS),
            promote: LuaScript::new(PROMOTE),
            reclaim: LuaScript::new(RECLAIM),
            cancel: LuaScript::new(CANCEL),
            retry_dead: LuaScript::new(RETRY_DEAD),
            list: LuaScript::new(LIST),
        }
    }

    /// Every script, for SCRIPT LOAD after a restart emptied the cache.
    pub fn all(&self) -> [&LuaScript; 14] {
        [
            &self.ensure_groups,
            &self.enqueue,
            &self.peek,
            &self.claim,
            &self.complete,
            &self.fail,
            &self.release,
            &self.renew,
            &self.progress,
            &self.promote,
            &self.reclaim,
            &self.cancel,
            &self.retry_dead,
            &self.list,
        ]
    }
}
