//! The Lua scripts of the Redis backend. Every state change of a partition
//! is one script run, so it is atomic (two promoters or reclaimers can never
//! move one job twice) and costs one round trip however many jobs it moves.
//!
//! Conventions shared by all scripts: `KEYS[1]` is the partition's counts
//! hash (it carries the partition's hash tag, so a Redis Cluster routes the
//! script to the node owning the partition); `ARGV[1]` is the partition's key
//! prefix (`<namespace>:{p<N>}:`), from which the script derives the other
//! keys of the same hash tag. Replies are arrays of strings (Lua `false`
//! would truncate an array, so absent values become `''`).
//!
//! **Batch entries.** A stream entry carries a batch of jobs of one
//! partition and priority in three fields: `h` (`deliveries|attempts`,
//! shared by every job of the entry), `n` (how many jobs) and `b`, the
//! jobs' ids and immutable records (JSON, written once) framed as
//! `<len>:<id><len>:<record>…` (see `codec::frame`). One field rather than
//! two per job keeps every stream command and reply short. Per-job Redis
//! work is what sets the throughput of a job queue, so the hot path does
//! none of it per job that can be done per entry: one XADD stores a whole
//! submission batch of a partition, XREADGROUP leases whole entries, and
//! the entry is acknowledged once all its jobs are finished.
//!
//! **Mutable state** lives beside the records, in the partition's `meta`
//! hash: one field per job (`st|r|ent|att|del|run|sta|fin|prog|dent|errlen|`
//! then the last error and the result; a job just submitted has the short
//! form `q|r|ent`). Statuses: `q` in entry `ent` (see
//! below), `s` scheduled, `f` failed and waiting for its retry, `c`
//! completed, `d` dead, `x` cancelled. A job's record is in stream entry
//! `ent` of its priority, or in the `parked` hash when `ent` is `-`
//! (submitted delayed). Entries are never trimmed: they are where completed
//! jobs' payloads stay readable.
//!
//! The `entries` hash keeps per entry (`rank:entry id`) `open|lease_ms|
//! leased_at|bits`: `bits` has one character per job of the entry (by its
//! position in the blob, from 0), `1` while the job is still queued in it;
//! `open` counts them. A job whose meta says `q` in an entry is queued
//! (running while the entry is pending) while its bit is `1`, and
//! **completed** once the bit is `0` (or the entry's field is gone):
//! every other way out of an entry (cancel, failure, release, reclaim)
//! rewrites the job's meta. Completion therefore writes nothing per job:
//! it clears bits, and appends the jobs' completion records (framed
//! `<len>:<payload>`: a header `h<attempts>|<deliveries>|<started>|<finished>`
//! shared by the jobs of one lease, then `<pos>|<result>` per job,
//! written by the client) to the entry's field of the `completions` hash.
//! `counts` keeps `q0..q3` (jobs queued in undelivered entries), `sched`,
//! `retry`, `run`, `done`, `dead`, `cancel`, and `layout` (3: this one).

/// Helpers prepended to every script.
const PRELUDE: &str = r#"
local NAMES = {'critical', 'high', 'medium', 'low'}
local GROUP = 'workers'
local function skey(pfx, r) return pfx .. 'stream:' .. NAMES[tonumber(r) + 1] end
local function mkey(pfx) return pfx .. 'meta' end
local function ekey(pfx) return pfx .. 'entries' end
local function ckey(pfx) return pfx .. 'completions' end
local function mparse(v)
  if not v then return nil end
  -- What ENQUEUE writes: queued in an entry, nothing else yet.
  local qr, qent = string.match(v, '^q|(%d)|([^|]*)$')
  if qr then
    return {st = 'q', r = qr, ent = qent, att = '0', del = '0', run = '', sta = '', fin = '',
      prog = '', dent = '', err = '', res = ''}
  end
  local st, r, ent, att, del, run, sta, fin, prog, dent, el, rest = string.match(v,
    '^(%a)|(%d)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(%d+)|(.*)$')
  if not st then return nil end
  local n = tonumber(el)
  return {st = st, r = r, ent = ent, att = att, del = del, run = run, sta = sta, fin = fin,
    prog = prog, dent = dent, err = string.sub(rest, 1, n), res = string.sub(rest, n + 1)}
end
local function mformat(m)
  return m.st .. '|' .. m.r .. '|' .. m.ent .. '|' .. m.att .. '|' .. m.del .. '|' .. m.run .. '|' ..
    m.sta .. '|' .. m.fin .. '|' .. m.prog .. '|' .. m.dent .. '|' .. #m.err .. '|' .. m.err .. m.res
end
-- True when meta value v says: in entry eid of rank r.
local function queued_in(v, r, eid)
  if not v then return false end
  local pre = 'q|' .. r .. '|' .. eid
  return v == pre or string.sub(v, 1, #pre + 1) == pre .. '|'
end
local function is_pending(s, eid)
  local p = redis.call('XPENDING', s, GROUP, eid, eid, 1)
  return p[1] ~= nil
end
-- An entries value: open, lease_ms, leased_at, bits ('' when absent).
local function eparse(v)
  if not v then return 0, 0, 0, '' end
  local open, lms, at, bits = string.match(v, '^(%-?%d+)|(%d+)|(%d+)|([01]*)$')
  return tonumber(open) or 0, tonumber(lms) or 0, tonumber(at) or 0, bits or ''
end
local function eformat(open, lms, at, bits) return open .. '|' .. lms .. '|' .. at .. '|' .. bits end
-- True when the job at position pos (from 0) is still queued in the entry.
local function has_bit(bits, pos) return string.byte(bits, pos + 1) == 49 end
-- A string's bytes as a table and back, a few thousand at a time (the
-- limit of string.byte and unpack).
local function bytes(s)
  local t, i = {}, 1
  while i <= #s do
    local j = math.min(i + 3999, #s)
    local part = {string.byte(s, i, j)}
    for k = 1, #part do t[i + k - 1] = part[k] end
    i = j + 1
  end
  return t
end
local function chars(t)
  local parts, i = {}, 1
  while i <= #t do
    local j = math.min(i + 3999, #t)
    parts[#parts + 1] = string.char(unpack(t, i, j))
    i = j + 1
  end
  return table.concat(parts)
end
-- True when the job whose meta is v is queued at position pos of entry eid.
local function in_entry(pfx, v, r, eid, pos)
  if not pos or not queued_in(v, r, eid) then return false end
  local _, _, _, bits = eparse(redis.call('HGET', ekey(pfx), r .. ':' .. eid))
  return has_bit(bits, pos)
end
local function chunked(cmd, key, items)
  local i = 1
  while i <= #items do
    local j = math.min(i + 999, #items)
    redis.call(cmd, key, unpack(items, i, j))
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
-- Writes an entry's state; acknowledges the entry once no job is left in it.
local function entry_set(pfx, r, eid, open, lms, at, bits)
  local f = r .. ':' .. eid
  if open <= 0 then
    redis.call('XACK', skey(pfx, r), GROUP, eid)
    redis.call('HDEL', ekey(pfx), f)
  else
    redis.call('HSET', ekey(pfx), f, eformat(open, lms, at, bits))
  end
end
-- Takes the jobs at positions ps (from 0) out of entry eid of rank r.
local function entry_done(pfx, r, eid, ps)
  local open, lms, at, bits = eparse(redis.call('HGET', ekey(pfx), r .. ':' .. eid))
  local t = bytes(bits)
  for _, p in ipairs(ps) do
    if t[p + 1] == 49 then t[p + 1] = 48; open = open - 1 end
  end
  entry_set(pfx, r, eid, open, lms, at, chars(t))
end
-- The ids and records framed in a batch blob (`<len>:<id><len>:<record>...`).
local function unframe(b)
  local ids, recs, pos = {}, {}, 1
  while pos <= #b do
    local c1 = string.find(b, ':', pos, true)
    if not c1 then break end
    local n1 = tonumber(string.sub(b, pos, c1 - 1))
    local c2 = n1 and string.find(b, ':', c1 + n1 + 1, true)
    if not c2 then break end
    local n2 = tonumber(string.sub(b, c1 + n1 + 1, c2 - 1))
    if not n2 then break end
    ids[#ids + 1] = string.sub(b, c1 + 1, c1 + n1)
    recs[#recs + 1] = string.sub(b, c2 + 1, c2 + n2)
    pos = c2 + n2 + 1
  end
  return ids, recs
end
local function frame(ids, recs)
  local parts = {}
  for i = 1, #ids do
    parts[#parts + 1] = #ids[i] .. ':' .. ids[i] .. #recs[i] .. ':' .. recs[i]
  end
  return table.concat(parts)
end
-- The fields of a stream entry as a table (h, n, b).
local function fields_of(f)
  local t = {}
  for i = 1, #f, 2 do t[f[i]] = f[i + 1] end
  return t
end
-- The records of entry eid of rank r, by job id.
local function records(pfx, r, eid)
  local out = {}
  local e = redis.call('XRANGE', skey(pfx, r), eid, eid)
  if e[1] then
    local ids, recs = unframe(fields_of(e[1][2]).b or '')
    for i = 1, #ids do out[ids[i]] = recs[i] end
  end
  return out
end
-- The position (from 0) and record of job id in entry eid of rank r.
local function find_in_entry(pfx, r, eid, id)
  local e = redis.call('XRANGE', skey(pfx, r), eid, eid)
  if not e[1] then return nil, nil end
  local ids, recs = unframe(fields_of(e[1][2]).b or '')
  for i = 1, #ids do
    if ids[i] == id then return i - 1, recs[i] end
  end
  return nil, nil
end
-- The record of a job whose meta is m.
local function record_of(pfx, id, m)
  if m.ent == '-' then return redis.call('HGET', pfx .. 'parked', id) end
  local _, rec = find_in_entry(pfx, m.r, m.ent, id)
  return rec
end
-- Calls fn(pos, frame, header, result) for each frame of completion
-- records b: a header frame (`h<attempts>|<deliveries>|<started>|<finished>`,
-- pos nil) applies to the job frames (`<pos>|<result>`) after it.
local function each_completion(b, fn)
  local at, header = 1, ''
  while at <= #b do
    local c = string.find(b, ':', at, true)
    local n = c and tonumber(string.sub(b, at, c - 1))
    if not n then return end
    local payload = string.sub(b, c + 1, c + n)
    local frame = string.sub(b, at, c + n)
    if string.byte(payload, 1) == 104 then
      header = string.sub(payload, 2)
      fn(nil, frame, header, '')
    else
      local pos, result = string.match(payload, '^(%d+)|(.*)$')
      fn(tonumber(pos), frame, header, result or '')
    end
    at = c + n + 1
  end
end
-- The meta of job id (nil if unknown) and its record; a job whose entry has
-- finished with it reads as completed, with its completion record applied.
local function state_of(pfx, id)
  local m = mparse(redis.call('HGET', mkey(pfx), id))
  if not m then return nil, nil end
  if m.st ~= 'q' then return m, record_of(pfx, id, m) end
  local pos, rec = find_in_entry(pfx, m.r, m.ent, id)
  m.pos = pos
  local _, _, _, bits = eparse(redis.call('HGET', ekey(pfx), m.r .. ':' .. m.ent))
  if pos and not has_bit(bits, pos) then
    m.st, m.prog = 'c', ''
    each_completion(redis.call('HGET', ckey(pfx), m.r .. ':' .. m.ent) or '', function(p, _, header, result)
      local att, del, sta, fin = string.match(header, '^(%d*)|(%d*)|(%d*)|(%d*)$')
      if p == pos and att then m.att, m.del, m.sta, m.fin, m.res = att, del, sta, fin, result end
    end)
  end
  return m, rec
end
-- Adds one entry of rank r holding jobs ids (with records recs) that share
-- deliveries del and attempts att; points their meta at it (queued).
local function add_entry(pfx, r, del, att, ids, recs, metas)
  local eid = redis.call('XADD', skey(pfx, r), '*', 'h', del .. '|' .. att, 'n', #ids, 'b', frame(ids, recs))
  local margs = {}
  for i = 1, #ids do
    local m = metas[i]
    m.st, m.ent, m.del, m.att, m.sta, m.prog = 'q', eid, del, att, '', ''
    margs[#margs + 1] = ids[i]; margs[#margs + 1] = mformat(m)
  end
  chunked('HSET', mkey(pfx), margs)
  redis.call('HSET', ekey(pfx), r .. ':' .. eid, eformat(#ids, 0, 0, string.rep('1', #ids)))
  incr(KEYS[1], 'q' .. r, #ids)
  return eid
end
local function to_dead(pfx, id, m, now, err)
  m.dent = redis.call('XADD', pfx .. 'dead', '*', 'j', id, 'e', err)
  m.st, m.fin, m.err = 'd', now, err
  redis.call('HSET', mkey(pfx), id, mformat(m))
  incr(KEYS[1], 'dead', 1)
end
local function finished(pfx, status, ids, len)
  if #ids == 0 then return end
  local k = pfx .. 'finished:' .. status
  chunked('LPUSH', k, ids)
  redis.call('LTRIM', k, 0, len - 1)
end
"#;

/// Checks the partition's layout and creates the consumer group of every
/// priority stream (idempotent). ARGV: pfx. A partition used by an older
/// layout (a counts hash without `layout = 3`) is refused rather than
/// read: its entries would be misread.
const ENSURE_GROUPS: &str = r#"
local pfx = ARGV[1]
local layout = redis.call('HGET', KEYS[1], 'layout')
if not layout and redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('OLDLAYOUT ' .. pfx .. ' holds jobs of an older layout')
end
if layout and layout ~= '3' then
  return redis.error_reply('OLDLAYOUT ' .. pfx .. ' holds layout ' .. layout)
end
redis.call('HSET', KEYS[1], 'layout', '3')
for r = 0, 3 do
  local res = redis.pcall('XGROUP', 'CREATE', skey(pfx, r), GROUP, '0', 'MKSTREAM')
  if type(res) == 'table' and res.err and not string.find(res.err, 'BUSYGROUP') then
    return redis.error_reply(res.err)
  end
end
return 'OK'
"#;

/// Stores a batch. ARGV: pfx, max_live, idem_ttl_ms, E (entries), then
/// per entry: rank, n, blob, the n ids, k, and k times: the index of a job
/// in the entry (from 0) and its idempotency key; then 5 per delayed job:
/// id, rank, run_at, record, idempotency key (or '').
/// Reply: for each job not added, its index in the call (entries' jobs
/// first, from 0) and the id of the existing job (same id, or the job first
/// submitted with the key); empty when all were added.
///
/// The client frames each entry's blob; the only per-job writes are the
/// meta fields, one HSET per entry. A duplicate is cut out of its blob here
/// (the rare path).
const ENQUEUE: &str = r#"
local pfx, maxlive, ittl, entries = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local counts, meta = KEYS[1], mkey(pfx)
local c = redis.call('HMGET', counts, 'q0', 'q1', 'q2', 'q3', 'sched', 'retry', 'run')
local live = 0
for i = 1, 7 do live = live + (tonumber(c[i]) or 0) end
-- Walk the arguments once. An entry's ids stay where they are in ARGV
-- (at..at+n-1); job i counts the entries' jobs first, then delayed ones.
local slots, idems, pos, total = {}, {}, 5, 0
for e = 1, entries do
  local n = tonumber(ARGV[pos + 1])
  local k = tonumber(ARGV[pos + 3 + n])
  slots[e] = {r = ARGV[pos], n = n, blob = ARGV[pos + 2], at = pos + 3, first = total + 1, keyed = k > 0}
  pos = pos + 4 + n
  for j = 0, k - 1 do idems[total + 1 + tonumber(ARGV[pos + j * 2])] = ARGV[pos + 1 + j * 2] end
  pos = pos + k * 2
  total = total + n
end
local delayed_at = pos
local delayed_ids = {}
while pos <= #ARGV do
  delayed_ids[#delayed_ids + 1] = ARGV[pos]
  if ARGV[pos + 4] ~= '' then idems[total + #delayed_ids] = ARGV[pos + 4] end
  pos = pos + 5
end
if live + total + #delayed_ids > maxlive then
  return redis.error_reply('QUEUEFULL the partition holds ' .. live .. ' live jobs')
end
-- Duplicates: an id already stored, or a known idempotency key.
local out, dropped, ndropped = {}, {}, 0
local function check(i, id, exists)
  local dup = exists and id
  if not dup and idems[i] then
    local ik = pfx .. 'idem:' .. idems[i]
    dup = redis.call('GET', ik)
    if not dup then
      if ittl > 0 then redis.call('SET', ik, id, 'PX', ittl) else redis.call('SET', ik, id) end
    end
  end
  if dup then
    out[#out + 1] = tostring(i - 1); out[#out + 1] = dup
    dropped[i] = true; ndropped = ndropped + 1
  end
end
for _, e in ipairs(slots) do
  local known, i = {}, 0
  while i < e.n do
    local j = math.min(i + 3999, e.n - 1)
    local part = redis.call('HMGET', meta, unpack(ARGV, e.at + i, e.at + j))
    for k = 1, j - i + 1 do known[i + k] = part[k] end
    i = j + 1
  end
  for j = 1, e.n do
    if known[j] or (e.keyed and idems[e.first + j - 1]) then check(e.first + j - 1, ARGV[e.at + j - 1], known[j]) end
  end
end
local dknown = hmget_all(meta, delayed_ids)
for j, id in ipairs(delayed_ids) do check(total + j, id, dknown[j]) end
-- One entry per slot; the meta of its jobs in one HSET.
local added = {}
for _, e in ipairs(slots) do
  local blob, kept = e.blob, {}
  if ndropped > 0 then
    for j = 0, e.n - 1 do
      if not dropped[e.first + j] then kept[#kept + 1] = ARGV[e.at + j] end
    end
    if #kept < e.n then
      local all, recs = unframe(blob)
      local keep = {}
      for j = 1, #all do
        if not dropped[e.first + j - 1] then keep[#keep + 1] = recs[j] end
      end
      blob = frame(kept, keep)
    end
  else
    for j = 0, e.n - 1 do kept[j + 1] = ARGV[e.at + j] end
  end
  if #kept > 0 then
    local eid = redis.call('XADD', skey(pfx, e.r), '*', 'h', '0|0', 'n', #kept, 'b', blob)
    local margs, tail = {}, 'q|' .. e.r .. '|' .. eid
    for j, id in ipairs(kept) do margs[j * 2 - 1] = id; margs[j * 2] = tail end
    chunked('HSET', meta, margs)
    redis.call('HSET', ekey(pfx), e.r .. ':' .. eid, eformat(#kept, 0, 0, string.rep('1', #kept)))
    added[e.r] = (added[e.r] or 0) + #kept
  end
end
for r, n in pairs(added) do incr(counts, 'q' .. r, n) end
local parked, delayed, smeta = {}, {}, {}
pos = delayed_at
for j, id in ipairs(delayed_ids) do
  local r, run, rec = ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3]
  if not dropped[total + j] then
    parked[#parked + 1] = id; parked[#parked + 1] = rec
    delayed[#delayed + 1] = run; delayed[#delayed + 1] = id
    smeta[#smeta + 1] = id; smeta[#smeta + 1] = 's|' .. r .. '|-|0|0|' .. run .. '|||||0|'
  end
  pos = pos + 5
end
if #parked > 0 then
  chunked('HSET', pfx .. 'parked', parked)
  chunked('ZADD', pfx .. 'delayed', delayed)
  chunked('HSET', meta, smeta)
  incr(counts, 'sched', #parked / 2)
end
return out
"#;

/// Leases entries of one priority stream until they hold at least `want`
/// jobs. ARGV: pfx, consumer, rank, want, lease_ms, now. Reply: per
/// entry {entry id, header, blob, metas, bits}: the blob holds every job
/// of the entry; bits are the entry's (which of them are still queued in
/// it), '' when all are; metas are the jobs' meta values, by position, when
/// the entry is not a fresh one (header not `0|0`: a retry, release or
/// reclaim, whose last error and run time the lease reports), else empty.
///
/// A fresh entry is handed over as read: no per-job work at all.
const LEASE: &str = r#"
local pfx, consumer, r, want, lms, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local s, counts = skey(pfx, r), KEYS[1]
local out, got = {}, 0
while got < want do
  local res = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', 1, 'STREAMS', s, '>')
  if not res or not res[1] or not res[1][2][1] then break end
  local e = res[1][2][1]
  local eid, f = e[1], fields_of(e[2])
  local open, _, _, bits = eparse(redis.call('HGET', ekey(pfx), r .. ':' .. eid))
  if open <= 0 then
    entry_set(pfx, r, eid, 0)
  else
    local hdr, blob, metas = f.h or '0|0', f.b or '', {}
    if hdr ~= '0|0' then
      local vals = hmget_all(mkey(pfx), (unframe(blob)))
      for i = 1, #vals do metas[i] = vals[i] or '' end
    end
    entry_set(pfx, r, eid, open, lms, now, bits)
    got = got + open
    out[#out + 1] = {eid, hdr, blob, metas, open == #bits and '' or bits}
  end
end
incr(counts, 'q' .. r, -got)
incr(counts, 'run', got)
return out
"#;

/// Completes leases. ARGV: pfx, then 4 per entry: rank, entry id, the
/// positions completed (a string with `1` at each, like the entry's bits,
/// trailing `0`s left out), and their completion records. Reply: per
/// entry, a string with `1` at each position completed (`0`: its lease
/// was lost); '' when the entry is no longer leased.
///
/// Nothing is written per job: the entry's bits are cleared, the records
/// appended to its `completions` field. When every job still queued in the
/// entry completes (the usual case) that is one string comparison.
const COMPLETE: &str = r#"
local pfx, out, total = ARGV[1], {}, 0
for i = 2, #ARGV, 4 do
  local r, eid, want, recs = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local f = r .. ':' .. eid
  local v = redis.call('HGET', ekey(pfx), f)
  local ok = ''
  if v and is_pending(skey(pfx, r), eid) then
    local open, lms, at, bits = eparse(v)
    if #want < #bits then want = want .. string.rep('0', #bits - #want) end
    local k = 0
    if want == bits then
      ok, k = want, open
    else
      local have, asked, got = bytes(bits), bytes(want), {}
      for j = 1, #asked do
        if asked[j] == 49 and have[j] == 49 then
          have[j], got[j], k = 48, 49, k + 1
        else
          got[j] = 48
        end
      end
      ok, bits = chars(got), chars(have)
      if ok ~= want then
        local kept = {}
        each_completion(recs, function(p, frame)
          if not p or has_bit(ok, p) then kept[#kept + 1] = frame end
        end)
        recs = table.concat(kept)
      end
    end
    if k > 0 then
      local old = redis.call('HGET', ckey(pfx), f)
      redis.call('HSET', ckey(pfx), f, old and (old .. recs) or recs)
      entry_set(pfx, r, eid, open - k, lms, at, bits)
      total = total + k
    end
  end
  out[#out + 1] = ok
end
incr(KEYS[1], 'run', -total)
incr(KEYS[1], 'done', total)
return out
"#;

/// Records a failed attempt. ARGV: pfx, now, rank, entry id, job id,
/// error, 'retry' or 'dead', retry time, attempts and deliveries (from the
/// receipt), lease start, position in the entry. Reply: '1' done, '0'
/// lease lost.
const FAIL: &str = r#"
local pfx, now, r, eid, id, err, mode, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local att, del, sta, pos = ARGV[9], ARGV[10], ARGV[11], tonumber(ARGV[12])
local v = redis.call('HGET', mkey(pfx), id)
if not in_entry(pfx, v, r, eid, pos) or not is_pending(skey(pfx, r), eid) then return '0' end
local m = mparse(v)
m.att, m.del, m.sta, m.err, m.prog = tostring(tonumber(att) + 1), del, sta, err, ''
entry_done(pfx, r, eid, {pos})
incr(KEYS[1], 'run', -1)
if mode == 'retry' then
  m.st, m.run = 'f', at
  redis.call('HSET', mkey(pfx), id, mformat(m))
  redis.call('ZADD', pfx .. 'delayed', at, id)
  incr(KEYS[1], 'retry', 1)
else
  to_dead(pfx, id, m, now, err)
end
return '1'
"#;

/// Hands leases back, ready at once, no attempt counted. ARGV: pfx, then 5
/// per job: rank, entry id, job id, deliveries (from the receipt), position
/// in the entry. Reply: one character per job, '1' or '0'. The jobs of one
/// entry go back as one new entry.
const RELEASE: &str = r#"
local pfx = ARGV[1]
local n = (#ARGV - 1) / 5
local groups, order, out = {}, {}, {}
for i = 0, n - 1 do
  local b = 1 + i * 5
  local r, eid, id, del, pos = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], tonumber(ARGV[b + 5])
  local v = redis.call('HGET', mkey(pfx), id)
  local key = r .. ':' .. eid
  local g = groups[key]
  if in_entry(pfx, v, r, eid, pos) and is_pending(skey(pfx, r), eid) and not (g and g.seen[id]) then
    if not g then
      g = {r = r, eid = eid, del = del, ids = {}, ps = {}, metas = {}, seen = {}}
      groups[key] = g; order[#order + 1] = key
    end
    g.seen[id] = true
    g.ids[#g.ids + 1] = id; g.ps[#g.ps + 1] = pos; g.metas[#g.metas + 1] = mparse(v)
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
end
for _, key in ipairs(order) do
  local g = groups[key]
  local recs, list = records(pfx, g.r, g.eid), {}
  for i = 1, #g.ids do list[i] = recs[g.ids[i]] or '{}' end
  entry_done(pfx, g.r, g.eid, g.ps)
  incr(KEYS[1], 'run', -#g.ids)
  add_entry(pfx, g.r, g.del, g.metas[1].att, g.ids, list, g.metas)
end
return table.concat(out)
"#;

/// Renews leases: resets the idle time of their entries (XCLAIM JUSTID) and
/// records the new lease length. ARGV: pfx, lease_ms, consumer, then 2 per
/// job: rank, entry id. Reply: one character per job, '1' or '0'.
const RENEW: &str = r#"
local pfx, lms, consumer = ARGV[1], ARGV[2], ARGV[3]
local n = (#ARGV - 3) / 2
local done, out = {}, {}
for i = 0, n - 1 do
  local r, eid = ARGV[4 + i * 2], ARGV[5 + i * 2]
  local key = r .. ':' .. eid
  if done[key] == nil then
    local c = redis.call('XCLAIM', skey(pfx, r), GROUP, consumer, 0, eid, 'JUSTID')
    done[key] = c[1] ~= nil
    if done[key] then
      local open, _, at, bits = eparse(redis.call('HGET', ekey(pfx), key))
      redis.call('HSET', ekey(pfx), key, eformat(open, lms, at, bits))
    end
  end
  out[#out + 1] = done[key] and '1' or '0'
end
return table.concat(out)
"#;

/// Stores progress. ARGV: pfx, rank, entry id, job id, value, position in
/// the entry. Reply '1' or '0'.
const PROGRESS: &str = r#"
local pfx, r, eid, id, value, pos = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local v = redis.call('HGET', mkey(pfx), id)
if not in_entry(pfx, v, r, eid, pos) or not is_pending(skey(pfx, r), eid) then return '0' end
local m = mparse(v)
m.prog = value
redis.call('HSET', mkey(pfx), id, mformat(m))
return '1'
"#;

/// Moves due delayed jobs and retries to their streams: range, add,
/// remove, in one script, so concurrent promoters never queue a job twice.
/// ARGV: pfx, now, limit, entry_jobs. Reply: how many moved. Jobs that
/// share priority, deliveries and attempts go back as one entry.
const PROMOTE: &str = r#"
local pfx, now, limit, per = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local dk = pfx .. 'delayed'
local due = redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, limit)
if #due == 0 then return '0' end
local vals = hmget_all(mkey(pfx), due)
local groups, order, moved, unpark = {}, {}, 0, {}
for i, id in ipairs(due) do
  local m = mparse(vals[i])
  if m and (m.st == 's' or m.st == 'f') then
    local rec = record_of(pfx, id, m)
    if m.ent == '-' then unpark[#unpark + 1] = id end
    incr(KEYS[1], m.st == 's' and 'sched' or 'retry', -1)
    local key = m.r .. '|' .. m.del .. '|' .. m.att
    local g = groups[key]
    if not g or #g.ids >= per then
      g = {r = m.r, del = m.del, att = m.att, ids = {}, recs = {}, metas = {}}
      groups[key] = g; order[#order + 1] = g
    end
    g.ids[#g.ids + 1] = id; g.recs[#g.recs + 1] = rec or '{}'; g.metas[#g.metas + 1] = m
    moved = moved + 1
  end
end
for _, g in ipairs(order) do add_entry(pfx, g.r, g.del, g.att, g.ids, g.recs, g.metas) end
if #unpark > 0 then chunked('HDEL', pfx .. 'parked', unpark) end
chunked('ZREM', dk, due)
return tostring(moved)
"#;

/// Returns entries idle past their lease: their unfinished jobs go back as
/// one new entry, or to the dead letters once delivered `max_deliveries`
/// times. ARGV: pfx, now, max_deliveries, scan. Reply: 3 per job: id,
/// '1' if dead else '0', record.
const RECLAIM: &str = r#"
local pfx, now, maxdel, scan = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for r = 0, 3 do
  local s = skey(pfx, r)
  local pending = redis.call('XPENDING', s, GROUP, '-', '+', scan)
  for _, p in ipairs(pending) do
    local eid, idle = p[1], tonumber(p[3])
    local key = r .. ':' .. eid
    local _, lms, _, bits = eparse(redis.call('HGET', ekey(pfx), key))
    if idle >= lms then
      local e = redis.call('XRANGE', s, eid, eid)
      local ids, recs, metas, hdr = {}, {}, {}, '0|0'
      if e[1] then
        local f = fields_of(e[1][2])
        hdr = f.h or '0|0'
        local all, allrecs = unframe(f.b or '')
        local vals = hmget_all(mkey(pfx), all)
        for i = 1, #all do
          if has_bit(bits, i - 1) and queued_in(vals[i], r, eid) then
            ids[#ids + 1] = all[i]; recs[#recs + 1] = allrecs[i]; metas[#metas + 1] = mparse(vals[i])
          end
        end
      end
      redis.call('XACK', s, GROUP, eid)
      redis.call('HDEL', ekey(pfx), key)
      incr(KEYS[1], 'run', -#ids)
      local del, att = string.match(hdr, '^(%d+)|(%d+)$')
      local delivered = (tonumber(del) or 0) + 1
      if delivered >= maxdel then
        local err = 'delivered ' .. delivered .. ' times without finishing (its worker died or hung each time)'
        for i = 1, #ids do
          metas[i].del = tostring(delivered)
          to_dead(pfx, ids[i], metas[i], now, err)
          out[#out + 1] = ids[i]; out[#out + 1] = '1'; out[#out + 1] = recs[i]
        end
      elseif #ids > 0 then
        add_entry(pfx, r, tostring(delivered), att or '0', ids, recs, metas)
        for i = 1, #ids do
          out[#out + 1] = ids[i]; out[#out + 1] = '0'; out[#out + 1] = recs[i]
        end
      end
    end
  end
end
return out
"#;

/// Cancels a queued, scheduled or failed job. ARGV: pfx, now, id,
/// index_len. Reply: 'ok', 'nf' or the status that forbids it.
const CANCEL: &str = r#"
local pfx, now, id, len = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local m = state_of(pfx, id)
if not m then return 'nf' end
if m.st == 'q' then
  if is_pending(skey(pfx, m.r), m.ent) then return 'running' end
  entry_done(pfx, m.r, m.ent, {m.pos})
  incr(KEYS[1], 'q' .. m.r, -1)
elseif m.st == 's' or m.st == 'f' then
  redis.call('ZREM', pfx .. 'delayed', id)
  incr(KEYS[1], m.st == 's' and 'sched' or 'retry', -1)
else
  local names = {c = 'completed', d = 'dead', x = 'cancelled'}
  return names[m.st] or 'unknown'
end
m.st, m.fin = 'x', now
redis.call('HSET', mkey(pfx), id, mformat(m))
incr(KEYS[1], 'cancel', 1)
finished(pfx, 'cancelled', {id}, len)
return 'ok'
"#;

/// Re-queues a dead job. ARGV: pfx, now, id, reset (1/0). Reply: 'ok',
/// 'nf' or the status that forbids it.
const RETRY_DEAD: &str = r#"
local pfx, now, id, reset = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local m, rec = state_of(pfx, id)
if not m then return 'nf' end
if m.st ~= 'd' then
  local names = {q = 'queued', s = 'scheduled', f = 'failed', c = 'completed', x = 'cancelled'}
  return names[m.st] or 'unknown'
end
if m.ent == '-' then redis.call('HDEL', pfx .. 'parked', id) end
if m.dent ~= '' then redis.call('XDEL', pfx .. 'dead', m.dent) end
m.dent, m.fin, m.run = '', '', now
incr(KEYS[1], 'dead', -1)
add_entry(pfx, m.r, m.del, reset == '1' and '0' or m.att, {id}, {rec or '{}'}, {m})
return 'ok'
"#;

/// Reads jobs. ARGV: pfx, then ids. Reply per id: {meta, record, running
/// ('1'/'0'), lease start}; meta '' for an unknown id.
const READ: &str = r#"
local pfx = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local m, rec = state_of(pfx, id)
  if not m then
    out[#out + 1] = {'', '', '0', ''}
  else
    local running, at = '0', ''
    if m.st == 'q' and is_pending(skey(pfx, m.r), m.ent) then
      running = '1'
      local _, _, leased = eparse(redis.call('HGET', ekey(pfx), m.r .. ':' .. m.ent))
      at = tostring(leased)
    end
    out[#out + 1] = {mformat(m), rec or '', running, at}
  end
end
return out
"#;

/// Lists up to `limit` ids that may have `status` (the caller reads and
/// filters them). ARGV: pfx, status, limit, scan.
const LIST: &str = r#"
local pfx, status, limit, scan = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
local function add(id) if #out < limit then out[#out + 1] = id end end
local function jobs_of(f)
  local ids = unframe(fields_of(f).b or '')
  for _, id in ipairs(ids) do add(id) end
end
if status == 'cancelled' then
  return redis.call('LRANGE', pfx .. 'finished:cancelled', 0, limit - 1)
elseif status == 'completed' then
  -- The newest entries first: completed jobs stay in their entries.
  for r = 0, 3 do
    for _, e in ipairs(redis.call('XREVRANGE', skey(pfx, r), '+', '-', 'COUNT', scan)) do
      jobs_of(e[2])
    end
  end
elseif status == 'dead' then
  for _, e in ipairs(redis.call('XREVRANGE', pfx .. 'dead', '+', '-', 'COUNT', limit)) do
    local f = e[2]
    for i = 1, #f, 2 do if f[i] == 'j' then add(f[i + 1]) end end
  end
elseif status == 'scheduled' or status == 'failed' then
  for _, id in ipairs(redis.call('ZRANGE', pfx .. 'delayed', 0, scan - 1)) do add(id) end
elseif status == 'running' then
  for r = 0, 3 do
    for _, p in ipairs(redis.call('XPENDING', skey(pfx, r), GROUP, '-', '+', scan)) do
      local e = redis.call('XRANGE', skey(pfx, r), p[1], p[1])
      if e[1] then jobs_of(e[1][2]) end
    end
  end
elseif status == 'queued' then
  for r = 0, 3 do
    local last = '0-0'
    local groups = redis.pcall('XINFO', 'GROUPS', skey(pfx, r))
    if type(groups) == 'table' and not groups.err then
      for _, g in ipairs(groups) do
        local name, l = nil, nil
        for i = 1, #g, 2 do
          if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then l = g[i + 1] end
        end
        if name == GROUP then last = l end
      end
    end
    for _, e in ipairs(redis.call('XRANGE', skey(pfx, r), '(' .. last, '+', 'COUNT', scan)) do
      jobs_of(e[2])
    end
  end
end
return out
"#;

/// A script and its SHA1 (for EVALSHA).
#[derive(Debug, Clone)]
pub(crate) struct LuaScript {
    pub sha: String,
    pub code: String,
}

impl LuaScript {
    fn new(body: &str) -> LuaScript {
        let code = format!("{}{body}", prelude_for(body));
        let sha = redis::Script::new(&code).get_hash().to_string();
        LuaScript { sha, code }
    }
}

/// The helpers of [`PRELUDE`] that `body` uses, directly or through other
/// helpers, in prelude order. Every EVALSHA runs its whole script, so each
/// helper it holds is a closure built anew on every call: for a one-job
/// submission the whole prelude cost more than the job (HTTP submissions
/// over Redis ran about 10 % slower once the prelude had grown).
///
/// A helper starts at a line `local function name` or `local name =` in
/// column 0, with the comment lines just above it; it may use only helpers
/// above it (Lua's rule for locals), so one pass from the bottom up finds
/// every helper needed.
fn prelude_for(body: &str) -> String {
    let helpers = helpers(PRELUDE);
    let mut needed = words(body);
    let mut keep = vec![false; helpers.len()];
    for (i, (name, code)) in helpers.iter().enumerate().rev() {
        if needed.contains(name) {
            keep[i] = true;
            needed.extend(words(code));
        }
    }
    helpers
        .iter()
        .zip(keep)
        .filter(|(_, keep)| *keep)
        .map(|((_, code), _)| *code)
        .collect()
}

/// The prelude's helpers as (name, code).
fn helpers(prelude: &str) -> Vec<(&str, &str)> {
    let mut starts: Vec<(usize, &str)> = Vec::new();
    let mut comment_from = None;
    let mut offset = 0;
    for line in prelude.split_inclusive('\n') {
        if line.starts_with("--") {
            comment_from.get_or_insert(offset);
        } else if let Some(rest) = line.strip_prefix("local ") {
            let rest = rest.strip_prefix("function ").unwrap_or(rest);
            let name = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default();
            starts.push((comment_from.unwrap_or(offset), name));
            comment_from = None;
        } else {
            comment_from = None;
        }
        offset += line.len();
    }
    let ends = starts
        .iter()
        .skip(1)
        .map(|(start, _)| *start)
        .chain([prelude.len()]);
    starts
        .iter()
        .zip(ends)
        .map(|((start, name), end)| (*name, &prelude[*start..end]))
        .collect()
}

/// The identifiers in Lua code.
fn words(code: &str) -> std::collections::HashSet<&str> {
    code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// All scripts of the backend.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub ensure_groups: LuaScript,
    pub enqueue: LuaScript,
    pub lease: LuaScript,
    pub complete: LuaScript,
    pub fail: LuaScript,
    pub release: LuaScript,
    pub renew: LuaScript,
    pub progress: LuaScript,
    pub promote: LuaScript,
    pub reclaim: LuaScript,
    pub cancel: LuaScript,
    pub retry_dead: LuaScript,
    pub read: LuaScript,
    pub list: LuaScript,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            ensure_groups: LuaScript::new(ENSURE_GROUPS),
            enqueue: LuaScript::new(ENQUEUE),
            lease: LuaScript::new(LEASE),
            complete: LuaScript::new(COMPLETE),
            fail: LuaScript::new(FAIL),
            release: LuaScript::new(RELEASE),
            renew: LuaScript::new(RENEW),
            progress: LuaScript::new(PROGRESS),
            promote: LuaScript::new(PROMOTE),
            reclaim: LuaScript::new(RECLAIM),
            cancel: LuaScript::new(CANCEL),
            retry_dead: LuaScript::new(RETRY_DEAD),
            read: LuaScript::new(READ),
            list: LuaScript::new(LIST),
        }
    }

    /// Every script, for SCRIPT LOAD after a restart emptied the cache.
    pub fn all(&self) -> [&LuaScript; 14] {
        [
            &self.ensure_groups,
            &self.enqueue,
            &self.lease,
            &self.complete,
            &self.fail,
            &self.release,
            &self.renew,
            &self.progress,
            &self.promote,
            &self.reclaim,
            &self.cancel,
            &self.retry_dead,
            &self.read,
            &self.list,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_script_carries_the_helpers_it_uses_and_no_others() {
        let names: Vec<&str> = helpers(PRELUDE).iter().map(|(name, _)| *name).collect();
        assert!(names.len() > 20, "{names:?}");
        assert_eq!(names[..3], ["NAMES", "GROUP", "skey"]);
        // Every helper's code is part of the prelude, once, in order.
        let whole: String = helpers(PRELUDE).iter().map(|(_, code)| *code).collect();
        assert_eq!(whole.trim(), PRELUDE.trim());
        let scripts = Scripts::new();
        // ENQUEUE frames blobs (through no other helper) but never reads a job's state.
        let enqueue = &scripts.enqueue.code;
        for used in ["local function frame", "local function skey", "local NAMES"] {
            assert!(enqueue.contains(used), "{used}");
        }
        for unused in ["local function state_of", "local function each_completion"] {
            assert!(!enqueue.contains(unused), "{unused}");
        }
        // READ needs state_of, which needs find_in_entry, unframe, fields_of...
        let read = &scripts.read.code;
        for used in [
            "state_of",
            "find_in_entry",
            "unframe",
            "fields_of",
            "each_completion",
        ] {
            assert!(read.contains(&format!("local function {used}")), "{used}");
        }
        // Every script is shorter than prelude + body, none is empty of helpers.
        for script in scripts.all() {
            assert!(script.code.len() < PRELUDE.len() + 4_000);
            assert!(script.code.contains("local function"));
        }
    }
}
