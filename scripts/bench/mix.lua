-- The guide's load mix for wrk, one endpoint class per wrk process, shared by
-- scripts/bench-api (the API server on loopback) and scripts/bench-pilot (the pilot, through nginx):
--
--   wrk -t1 -cN -dSECONDSs -s mix.lua URL -- CLASS HEADER_FILE SUBJECTS [BACKOFF_MS]
--
-- CLASS        facts | corrections | heartbeat | escalation
-- HEADER_FILE  "Name: value" lines sent with every request (tenant and key), so no secret
--              is ever in argv; a line "--" starts another credential set, and requests
--              take the sets in turn (several keys: the API's write limit is per key).
-- SUBJECTS     seeded subjects u-1..u-SUBJECTS (scripts/bench/seed.sql), systems system-1..5.
-- BACKOFF_MS   after a 429, wait this long before the thread's next request, as a client
--              honouring "retry later" would (default 0: closed loop, the limiter is hammered).
--
-- done() prints one machine-readable line, read by scripts/bench/report.py:
--   RESULT class=... requests=... seconds=... p50_ms=... p95_ms=... p99_ms=...
--          ok=... limited_edge=... limited_api=... other=... socket_errors=...
-- ok: 2xx; limited_edge: 429 from nginx's limit_req; limited_api: 429 from the API's
-- write limit; other: any other status; socket_errors: connect/read/write/timeout.

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

-- Globals of the thread are what done() reads back (thread:get): class and the counters.
local subjects, credentials, counter, nonce, backoff_ms, limited_last

local function read_credentials(path)
  local sets, current = {}, {}
  for line in io.lines(path) do
    if line == "--" then
      if next(current) then table.insert(sets, current) end
      current = {}
    else
      local name, value = line:match("^([%w-]+):%s*(.-)%s*$")
      if name then current[name] = value end
    end
  end
  if next(current) then table.insert(sets, current) end
  assert(#sets > 0, "no headers in " .. path)
  return sets
end

function init(args)
  class, subjects = args[1], tonumber(args[3])
  assert(class == "facts" or class == "corrections" or class == "heartbeat" or class == "escalation",
    "unknown class " .. tostring(class))
  assert(subjects and subjects > 0, "SUBJECTS must be a positive number")
  credentials = read_credentials(args[2])
  backoff_ms = tonumber(args[4] or "0") or 0
  limited_last = false
  counter = 0
  math.randomseed(os.time() * 1000 + id)
  nonce = math.random(1, 1000000000)
  ok, limited_edge, limited_api, other = 0, 0, 0, 0
end

-- The next credential set, with the JSON content type; a fresh table, since wrk.format
-- writes Host and Content-Length into the table it is given.
local function headers()
  counter = counter + 1
  local h = { ["Content-Type"] = "application/json" }
  for name, value in pairs(credentials[counter % #credentials + 1]) do h[name] = value end
  return h
end

local builders = {
  facts = function()
    local path = string.format("/v1/facts?subject_type=user&subject_id=u-%d&requester_id=assistant",
      math.random(subjects))
    return wrk.format("GET", path, headers())
  end,
  corrections = function()
    local h = headers()
    local body = string.format('{"subject": {"type": "user", "id": "u-%d"}, "field_key": "field_%d", '
      .. '"value": {"note": "bench"}, "class": "FACT", "permissions": {"readers": ["assistant"]}, '
      .. '"actor": {"type": "user", "id": "bench"}, "idempotency_key": "bench-%d-%d-%d-%d"}',
      math.random(subjects), math.random(5), nonce, os.time(), id, counter)
    return wrk.format("POST", "/v1/corrections", h, body)
  end,
  heartbeat = function()
    local body = string.format('{"system_id": "system-%d", "enforced_correction_version": "2026-01-01T00:00:00Z"}',
      math.random(5))
    return wrk.format("POST", "/v1/enforcement/heartbeat", headers(), body)
  end,
  escalation = function()
    return wrk.format("GET", "/v1/enforcement/escalation", headers())
  end,
}

function request()
  return builders[class]()
end

function delay()
  if limited_last then
    limited_last = false
    return backoff_ms
  end
  return 0
end

function response(status, _, body)
  limited_last = status == 429 and backoff_ms > 0
  if status >= 200 and status < 300 then
    ok = ok + 1
  elseif status == 429 then
    -- nginx's refusal names the address (roles/nginx); the API's names its per-minute limit.
    if body and body:find("from this address", 1, true) then
      limited_edge = limited_edge + 1
    else
      limited_api = limited_api + 1
    end
  else
    other = other + 1
  end
end

function done(summary, latency, _)
  local counts = { ok = 0, limited_edge = 0, limited_api = 0, other = 0 }
  for _, thread in ipairs(threads) do
    for name in pairs(counts) do counts[name] = counts[name] + (thread:get(name) or 0) end
  end
  local e = summary.errors
  io.write(string.format("RESULT class=%s requests=%d seconds=%.3f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f "
    .. "ok=%d limited_edge=%d limited_api=%d other=%d socket_errors=%d\n",
    threads[1]:get("class"), summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    counts.ok, counts.limited_edge, counts.limited_api, counts.other,
    e.connect + e.read + e.write + e.timeout))
end
