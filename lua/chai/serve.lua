-- chai.serve: `chai serve`, the REST API and web page (docs/serve.md).
--
--   chai serve [--host 127.0.0.1] [--port 5005] [--results DIR] [--token TOKEN] [--jobs 1]
--              [--timeout 15]
--
-- One thread runs the loop: the HTTP server (C, libmicrohttpd) waits up to 50 ms (250 ms idle)
-- for requests and calls the handler (chai.serve_api) for each; between turns the jobs
-- (chai.serve_jobs) are polled: finished children reaped, new progress and results lines read
-- and sent to the event streams, queued jobs started. SIGTERM or SIGINT: stop accepting, send
-- SIGTERM to the running searches (each finishes or checkpoints its configuration, writes a
-- "stopped" event and exits), mark them interrupted, exit 0; the signal again kills them.
local core = require "chai.core"
local fs = core.serve

local M = {}

M.usage = "chai serve [--host 127.0.0.1] [--port 5005] [--results DIR] [--token TOKEN] "
          .. "[--jobs 1] [--timeout 15]"

M.defaults = {host = "127.0.0.1", port = 5005, results = "results/serve", jobs = 1, timeout = 15,
              search = "experiments/search.lua"}

local HELP = [[
Serves the REST API and the web page of chai (docs/serve.md): start searches of the best
configuration, follow their progress, read their results and reports.

  --host ADDR      numeric address to listen on (default 127.0.0.1; localhost works too). Any
                   address that is not loopback needs --token.
  --port N         TCP port (default 5005; 0 picks a free one, printed on start)
  --results DIR    where the jobs' folders are kept (default results/serve)
  --token TOKEN    every request but /health and the page's files must carry
                   "Authorization: Bearer TOKEN" (at least 16 characters)
  --jobs N         searches run at once (default 1: the work is CPU-bound); more wait in a queue
  --timeout S      a connection silent for S seconds is closed (default 15)

Stop with SIGTERM or Ctrl-C: running searches finish their configuration and are marked
interrupted (POST /jobs/ID/resume continues them); a second signal kills them.]]

local function is_loopback(host)
  return host:match("^127%.%d+%.%d+%.%d+$") ~= nil or host == "::1"
end
M.is_loopback = is_loopback

local function usage_error(fmt, ...)
  io.stderr:write("chai serve: ", string.format(fmt, ...), "\nusage: ", M.usage, "\n")
  return nil, 2
end

--- Parses the command's words. Returns the options table, or nil and an exit status (after
--- printing a message).
function M.parse(args)
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  local i = 1
  local function value(name)
    local v = args[i + 1]
    if v == nil then return nil end
    i = i + 1
    return v
  end
  local function integer(name, v, lo, hi)
    local n = math.tointeger(tonumber(v))
    if not n or n < lo or n > hi then
      return nil, string.format("%s must be an integer %d..%d, got '%s'", name, lo, hi, v)
    end
    return n
  end
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^(%-%-[%w%-]+)=(.*)$")
    if name then a = name end
    local function arg()
      if inline then return inline end
      return value(a)
    end
    if a == "-h" or a == "--help" then
      print("usage: " .. M.usage .. "\n\n" .. HELP)
      return nil, 0
    elseif a == "--host" or a == "--port" or a == "--results" or a == "--token" or a == "--jobs"
           or a == "--timeout" or a == "--search-script" then
      local v = arg()
      if v == nil or v == "" then return usage_error("%s needs a value", a) end
      if a == "--host" then
        o.host = v == "localhost" and "127.0.0.1" or v
      elseif a == "--port" then
        local n, err = integer(a, v, 0, 65535)
        if not n then return usage_error("%s", err) end
        o.port = n
      elseif a == "--results" then
        o.results = v
      elseif a == "--token" then
        if #v < 16 or not v:match("^[!-~]+$") then
          return usage_error("--token must be at least 16 visible ASCII characters without "
                             .. "spaces (e.g. from: head -c 24 /dev/urandom | base64)")
        end
        o.token = v
      elseif a == "--jobs" then
        local n, err = integer(a, v, 1, 64)
        if not n then return usage_error("%s", err) end
        o.jobs = n
      elseif a == "--timeout" then
        local n, err = integer(a, v, 1, 3600)
        if not n then return usage_error("%s", err) end
        o.timeout = n
      else -- --search-script: another search program (the tests' stand-in)
        o.search = v
      end
    else
      return usage_error("unknown option '%s'", a)
    end
    i = i + 1
  end
  if not o.host:match("^[%x%.:]+$") then
    return usage_error("--host must be a numeric IPv4 or IPv6 address (or localhost), got '%s'",
                       o.host)
  end
  if not is_loopback(o.host) and not o.token then
    return usage_error("--host %s is not a loopback address: refusing to serve it without "
                       .. "--token TOKEN (the token is then required on every request but "
                       .. "/health)", o.host)
  end
  return o
end

-- The search script as an absolute path: the name itself (from the current folder), else under
-- the bundled scripts/ folder, the sibling of the Lua folder in a build tree, an install and
-- $CHAI_HOME alike.
local function find_script(name)
  local st = fs.stat(name)
  if st and st.type == "file" then return fs.realpath(name) end
  if name:sub(1, 1) == "/" then return nil end
  local lua_dir = package.path:match("^([^;]*)/%?%.lua")
  if lua_dir then
    local p = lua_dir:gsub("/[^/]+$", "") .. "/scripts/" .. name
    st = fs.stat(p)
    if st and st.type == "file" then return fs.realpath(p) end
  end
  return nil
end

local function log(fmt, ...)
  io.stderr:write(os.date("!%H:%M:%S "), string.format(fmt, ...), "\n")
  io.stderr:flush()
end

-- GET /health: the static part encoded once; the job counts and the uptime spliced in per request
-- (it is what a load balancer polls, so it stays cheap).
local function health_fn(jobs, started)
  local chai = require "chai"
  local json = core.json
  local cpu = chai.cpu()
  local static = json.encode({
    status = "ok", version = chai.version, pid = fs.pid(),
    cpu = {vendor = cpu.vendor, family = cpu.family, model = cpu.model, features = cpu.features,
           threads = cpu.threads},
    kernels = {simd = cpu.simd, blas_core = cpu.blas_core or json.null,
               blas_parallel = cpu.blas_parallel or json.null},
  }):sub(1, -2) -- without its closing brace
  return function()
    local c = jobs:counts()
    return string.format('%s,"jobs":{"queued":%d,"running":%d,"total":%d},"uptime_s":%.1f}',
                         static, c.queued, c.running, c.total, fs.now() - started)
  end
end

--- Runs the server until a stop signal. Returns the exit status.
function M.run(o)
  local script = find_script(o.search)
  if not script then
    io.stderr:write(string.format("chai serve: cannot find the search script '%s' (looked in the "
                                  .. "current folder and the bundled scripts/)\n", o.search))
    return 1
  end
  local ok, err = fs.mkdir(o.results)
  local root = ok and fs.realpath(o.results)
  if not root then
    io.stderr:write("chai serve: --results: ", tostring(err), "\n")
    return 1
  end
  local catalog = require("chai.serve_catalog").new()
  local jobs = require("chai.serve_jobs").new{root = root, script = script, max_running = o.jobs,
                                              catalog = catalog, log = log,
                                              heartbeat_s = math.min(15, math.max(1, o.timeout // 2))}
  local loaded, lerr = jobs:load()
  if not loaded then
    io.stderr:write("chai serve: --results: ", tostring(lerr), "\n")
    return 1
  end
  local okopen, srv = pcall(fs.open, {host = o.host, port = o.port, timeout = o.timeout,
                                      max_body = 64 * 1024})
  if not okopen then
    io.stderr:write("chai serve: ", tostring(srv):gsub("^server: ", ""), "\n")
    return 1
  end
  local port = srv:port()
  local started = fs.now()
  local app = require("chai.serve_api").new{jobs = jobs, catalog = catalog, token = o.token,
                                            host = o.host, port = port,
                                            health = health_fn(jobs, started)}
  local function handler(req) return app.handle(req, srv) end
  fs.stop_signals()
  local shown_host = o.host:find(":", 1, true) and ("[" .. o.host .. "]") or o.host
  io.stdout:write(string.format("chai serve: listening on http://%s:%d/ (results in %s, %d job%s "
                                .. "at a time%s)\n", shown_host, port, root, o.jobs,
                                o.jobs == 1 and "" or "s", o.token and ", token required" or ""))
  io.stdout:flush()
  local counts = jobs:counts()
  if counts.total > 0 then
    log("%d earlier jobs in %s (%d queued)", counts.total, root, counts.queued)
  end

  local signals_seen, last_tick = 0, 0
  while true do
    -- With jobs running, their files are read every 50 ms (a progress line reaches the streams
    -- that soon); idle, the loop wakes every 250 ms. Under load run() returns at each request,
    -- and the files are still read only every 50 ms.
    local busy = next(jobs.running) ~= nil or #jobs.queue > 0
    srv:run(busy and 50 or 250, handler)
    local now = fs.now()
    if jobs.dirty or now - last_tick >= 0.05 then -- dirty: a job was just queued or cancelled
      jobs:tick()
      last_tick = now
    end
    local n, name = fs.stop_requested()
    if n > signals_seen then
      signals_seen = n
      if n == 1 then
        srv:stop_accepting()
        local running = jobs:shutdown(false)
        log("%s: no new connections; %s", name, running > 0 and string.format(
          "waiting for %d running search%s to stop (send it again to kill)", running,
          running == 1 and "" or "es") or "stopping")
      else
        jobs:shutdown(true)
        log("%s again: killing the running searches", name)
      end
    end
    if signals_seen > 0 and jobs:tick() == 0 then break end
  end
  jobs:close_streams()
  srv:close()
  log("stopped")
  return 0
end

--- The `chai serve` command: args are the words after "serve".
function M.cli(args)
  local o, status = M.parse(args)
  if not o then return status end
  return M.run(o)
end

return M
