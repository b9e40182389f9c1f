-- Shared by the bench wrk scripts: request headers from a file and a JSON summary line.
-- BENCH_HEADERS: file of "name: value" lines (sent on every request).
local M = {}

function M.read_headers()
  local h = {}
  local f = os.getenv("BENCH_HEADERS")
  if f and f ~= "" then
    for line in io.lines(f) do
      local k, v = line:match("^([^:]+):%s?(.*)$")
      if k then h[k] = v end
    end
  end
  return h
end

function M.done(summary, latency)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end

return M
