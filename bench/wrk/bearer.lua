-- wrk script for the tracegate rows of bench/http_proxy.sh: every connection sends its own
-- grant credentials (Authorization: Bearer tgb_…).
--
-- A grant carries one request at a time (a second concurrent request on it is refused with
-- 403 "in use"), and it is used up after its `uses` requests. So wrk runs with -t N -c N
-- (one connection per thread), and thread i gets line i of $BEARER_FILE: the bearers of its
-- own grants, separated by spaces. The connection sends the first bearer GRANT_USES times,
-- then the next one, and so on. A connection that has used up all of its bearers keeps
-- sending the last one (the gateway then answers 403, which wrk counts as non-2xx); the
-- number of such requests is reported as "bearers_exhausted" so the caller can tell that
-- it gave out too few grants rather than that the gateway misbehaved.
--
-- Environment: BEARER_FILE (required; one line per connection), GRANT_USES (default 1000).
-- done() prints TG_RESULT {...} (report.lua) with bearer_threads, bearer_switches and
-- bearers_exhausted added.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

-- ---- main state: hand out the lines -------------------------------------------------------
local lines = nil
local threads = {}

function setup(thread)
   if lines == nil then
      local path = os.getenv("BEARER_FILE")
      assert(path and path ~= "", "bearer.lua: BEARER_FILE is not set")
      lines = {}
      for line in io.lines(path) do
         if line:match("%S") then lines[#lines + 1] = line end
      end
   end
   local i = #threads + 1
   assert(lines[i], string.format("bearer.lua: %s has %d line(s), wrk runs more threads " ..
                                  "(run with -t N -c N and N lines)",
                                  os.getenv("BEARER_FILE"), #lines))
   thread:set("bearer_line", lines[i])
   thread:set("grant_uses", tonumber(os.getenv("GRANT_USES") or "1000"))
   threads[#threads + 1] = thread
end

-- ---- thread state ------------------------------------------------------------------------
local list, pos, used, req
-- globals read back by done() through thread:get()
switches = 0
exhausted = 0

local function build(bearer)
   local headers = {}
   for k, v in pairs(wrk.headers) do headers[k] = v end
   headers["Authorization"] = "Bearer " .. bearer
   return wrk.format(nil, nil, headers)
end

function init(args)
   list = {}
   for b in string.gmatch(bearer_line or "", "%S+") do list[#list + 1] = b end
   assert(#list > 0, "bearer.lua: a thread got no bearer")
   pos, used = 1, 0
   req = build(list[1])
end

function request()
   if used >= grant_uses then
      if pos < #list then
         pos, used = pos + 1, 0
         switches = switches + 1
         req = build(list[pos])
      else
         exhausted = exhausted + 1
      end
   end
   used = used + 1
   return req
end

function done(summary, latency, requests)
   local sw, ex = 0, 0
   for _, t in ipairs(threads) do
      sw = sw + (t:get("switches") or 0)
      ex = ex + (t:get("exhausted") or 0)
   end
   tg_report(summary, latency, {bearer_threads = #threads, bearer_switches = sw,
                                bearers_exhausted = ex})
end
