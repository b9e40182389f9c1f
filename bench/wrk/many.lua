-- Many users: every request takes the next token of a pool (BENCH_TOKENS, one a line);
-- each wrk thread starts at its own offset and walks the whole pool in a cycle.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local next_id = 0
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local reqs, n, i = {}, 0, 0

function init(args)
  local headers = common.read_headers()
  for tok in io.lines(os.getenv("BENCH_TOKENS")) do
    if tok ~= "" then
      headers["authorization"] = "Bearer " .. tok
      n = n + 1
      reqs[n] = wrk.format(nil, nil, headers)
    end
  end
  i = math.floor((tid or 0) * n / nthreads)
end

function request()
  i = i % n + 1
  return reqs[i]
end

function done(summary, latency, requests) common.done(summary, latency) end
