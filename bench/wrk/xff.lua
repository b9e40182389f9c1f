-- Distinct clients: each request comes "from" a new address in x-forwarded-for (the filter
-- trusts one proxy hop), BENCH_KEYS addresses in all, split between the wrk threads; each
-- thread stops once its share is answered (bench.py then stops wrk with SIGINT).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local next_id = 0
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local total = tonumber(os.getenv("BENCH_KEYS") or "1000")
local base = tonumber(os.getenv("BENCH_KEY_BASE") or "0")

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local headers, first, last, i, answered

function init(args)
  headers = common.read_headers()
  local share = math.ceil(total / nthreads)
  first = (tid or 0) * share
  last = math.min(total, first + share) - 1
  i = first - 1
  answered = 0
end

local function one()
  i = i + 1
  local k = i
  if k > last then k = last end
  k = k + base
  headers["x-forwarded-for"] = string.format("10.%d.%d.%d", math.floor(k / 65536) % 256, math.floor(k / 256) % 256, k % 256)
  return wrk.format(nil, nil, headers)
end

local calls = 0

function request()
  calls = calls + 1
  -- wrk calls request() once in thread 0 before the run (to count pipelined requests): that
  -- request is never sent, so it must not use up an address. (No pipelining: Envoy closes
  -- HTTP/1.1 connections that pipeline.)
  local save = i
  local req = one()
  if tid == 0 and calls == 1 then i = save end
  return req
end

function response(status, headers, body)
  answered = answered + 1
  if answered > last - first then wrk.thread:stop() end
end

function done(summary, latency, requests) common.done(summary, latency) end
