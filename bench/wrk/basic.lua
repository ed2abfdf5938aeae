-- wrk script for the `direct` row of bench/http_proxy.sh: GET the trace straight from the
-- store with its Basic credential. The header value comes from the environment
-- (STORE_AUTHORIZATION, "Basic base64(user:secret)") so that it is not on wrk's command line.
-- No request() function: wrk sends one fixed request, its fastest path.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local auth = os.getenv("STORE_AUTHORIZATION")
assert(auth and auth ~= "", "basic.lua: STORE_AUTHORIZATION is not set")
wrk.headers["Authorization"] = auth

function done(summary, latency, requests)
   tg_report(summary, latency, {})
end
