-- Hot path: one request (one token) re-sent on keep-alive connections. The request is built
-- once by wrk (no Lua per request), so the client stays cheap.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
for k, v in pairs(common.read_headers()) do wrk.headers[k] = v end
function done(summary, latency, requests) common.done(summary, latency) end
