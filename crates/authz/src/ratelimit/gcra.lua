-- Atomic GCRA check-and-reserve over two buckets (requests, tokens) of one caller.
-- The same arithmetic as crates/authz/src/ratelimit/gcra.rs; times in microseconds from Redis TIME,
-- so every replica shares one clock.
-- KEYS[1]: request bucket TAT, KEYS[2]: token bucket TAT
-- ARGV: op ('reserve' | 'extend' | 'peek' | 'refund'; 'extend' takes tokens without a request), request interval, window (both us), token interval, tokens
-- Returns {allowed (0/1), request window in use (us), token window in use (us), wait (us)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]
local req_interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local tok_interval = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local eps = 0.001
local req_tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
local tok_tat = math.max(tonumber(redis.call('GET', KEYS[2]) or now), now)

-- A key lives until its bucket is full again; after that it is equivalent to no key at all.
local function store(key, tat)
  local ttl_ms = math.ceil((tat - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.17g', tat), 'PX', ttl_ms)
end

if op == 'refund' then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    store(KEYS[2], math.max(tok_tat - n * tok_interval, now))
  end
  return {1, 0, 0, 0}
end
if op == 'peek' then
  return {1, math.floor(req_tat - now), math.floor(tok_tat - now), 0}
end
local req_next = req_tat
if op ~= 'extend' then
  req_next = req_tat + req_interval
end
local tok_next = tok_tat + n * tok_interval
local req_over = req_next - now - window
local tok_over = tok_next - now - window
if req_over <= eps and tok_over <= eps then
  if op ~= 'extend' then
    store(KEYS[1], req_next)
  end
  store(KEYS[2], tok_next)
  return {1, math.floor(req_next - now), math.floor(tok_next - now), 0}
end
return {0, math.floor(req_tat - now), math.floor(tok_tat - now), math.ceil(math.max(req_over, tok_over, 0))}
