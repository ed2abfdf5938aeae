-- Shared by bench/wrk/bearer.lua and bench/wrk/basic.lua (loaded with dofile from the same
-- folder): done() prints one machine-readable line for bench/http_proxy_lib.py,
--   TG_RESULT {"requests": …, "duration_us": …, "latency_us": {"p50": …, …}, …}
-- next to wrk's own text summary. Latencies are wrk's (µs, per request, from the moment
-- the request was written to the moment its response was complete; wrk 4 does not correct
-- for coordinated omission, which does not matter for a closed loop of N connections).

function tg_report(summary, latency, extra)
   local e = summary.errors
   local p = function(q) return latency:percentile(q) end
   local parts = {
      string.format('"requests":%d', summary.requests),
      string.format('"duration_us":%d', summary.duration),
      string.format('"bytes":%d', summary.bytes),
      string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
                    e.connect, e.read, e.write, e.status, e.timeout),
      string.format('"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
                    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p99.9":%d}',
                    latency.min, latency.mean, latency.stdev, latency.max,
                    p(50), p(75), p(90), p(99), p(99.9)),
   }
   for k, v in pairs(extra or {}) do
      parts[#parts + 1] = string.format('"%s":%d', k, v)
   end
   io.write("TG_RESULT {" .. table.concat(parts, ",") .. "}\n")
end
