-- chai.serve_jobs: the jobs of `chai serve`. A job is one run of the search command
-- (experiments/search.lua, see its contract in docs/serve.md) in a child process of the chai
-- binary itself, so a crash in a job ends that job and not the server. Jobs wait in a queue and at
-- most `max_running` run at once. Each job has a folder <results>/<id>/ holding job.json (this
-- module's record, rewritten atomically at every change), the search's files (meta.json,
-- progress.jsonl, results.jsonl, search.log, report.html, best/) and output.log (the child's
-- stdout and stderr). On start the folders are read back: a job that was running is marked
-- interrupted and can be resumed; queued jobs wait again in their order.
--
-- The feed: progress.jsonl and results.jsonl are read as they grow, each line becoming an event
-- ("progress" or "result") that Server-Sent-Event subscribers receive as it arrives.
local core = require "chai.core"
local fs, json = core.serve, core.json

local M = {}
M.__index = M

local TERMINAL = {done = true, failed = true, cancelled = true, interrupted = true}
local RESUMABLE = {interrupted = true, cancelled = true, failed = true}
M.terminal = TERMINAL

-- What job.json keeps (everything else is the server's run-time state).
local RECORD = {"id", "kind", "request", "state", "created", "started", "finished", "runs", "pid",
                "exit", "error", "resume_next"}

local function exists(path) return fs.stat(path) ~= nil end

local function read_file(path, limit)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read(limit or "a")
  f:close()
  return text
end

local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then
    os.remove(tmp)
    return nil, werr or cerr
  end
  return os.rename(tmp, path)
end

--- A job store over the folder `o.root` (absolute). o.script: the search script; o.exe: the chai
--- binary ("/proc/self/exe"); o.max_running; o.catalog (model names → --model arguments);
--- o.log(fmt, ...) for one-line messages; o.heartbeat_s between SSE keep-alive comments.
function M.new(o)
  local self = setmetatable({}, M)
  self.root, self.script, self.exe = o.root, o.script, o.exe or "/proc/self/exe"
  self.max_running = o.max_running or 1
  self.catalog = o.catalog
  self.log = o.log or function() end
  self.heartbeat_s = o.heartbeat_s or 15
  self.jobs, self.order, self.queue = {}, {}, {}
  self.running = {}
  self.last_heartbeat = fs.now()
  return self
end

function M:folder(job) return self.root .. "/" .. job.id end

function M:save(job)
  local rec = {}
  for _, k in ipairs(RECORD) do rec[k] = job[k] end
  local ok, err = write_atomic(self:folder(job) .. "/job.json", json.encode(rec, {indent = true}))
  if not ok then self.log("job %s: cannot write job.json: %s", job.id, tostring(err)) end
end

local ID_PATTERN = "^%d%d%d%d%d%d%d%d%-%d%d%d%d%d%d%-%x%x%x%x%x%x$"
M.id_pattern = ID_PATTERN

--- Reads the jobs under root (creating root when needed). Returns true, or nil and a message.
function M:load()
  local ok, err = fs.mkdir(self.root)
  if not ok then return nil, err end
  local now = fs.now()
  for _, name in ipairs(fs.listdir(self.root) or {}) do
    local text = name:match(ID_PATTERN) and read_file(self.root .. "/" .. name .. "/job.json")
    local okj, job = pcall(json.decode, text or "")
    if text and okj and type(job) == "table" and job.id == name and type(job.state) == "string"
       and type(job.request) == "table" then
      if job.state == "running" or job.state == "cancelling" then
        local was = job.state
        job.state = was == "running" and "interrupted" or "cancelled"
        job.error = was == "running" and "the server stopped while the job ran" or job.error
        job.finished = job.finished or now
        self:save(job)
      end
      self.jobs[name] = job
      self.order[#self.order + 1] = job
    elseif text then
      self.log("skipping %s: its job.json is not a job record", name)
    end
  end
  table.sort(self.order, function(a, b)
    if a.created ~= b.created then return (a.created or 0) < (b.created or 0) end
    return a.id < b.id
  end)
  for _, job in ipairs(self.order) do
    if job.state == "queued" then self.queue[#self.queue + 1] = job end
  end
  return true
end

function M:get(id) return self.jobs[id] end

--- Jobs newest first.
function M:list()
  local out = {}
  for i = #self.order, 1, -1 do out[#out + 1] = self.order[i] end
  return out
end

function M:counts()
  local running = 0
  for _ in pairs(self.running) do running = running + 1 end
  return {queued = #self.queue, running = running, total = #self.order}
end

local function new_id(now)
  return os.date("!%Y%m%d-%H%M%S", math.floor(now)) .. "-" .. fs.random_hex(3)
end

--- A new queued job for a validated request ({model_name=, dataset_name=, criterion=,
--- configurations=, quick=}) of `kind` ("find_best_configuration" | "choose_configuration").
--- Returns the job, or nil and a message when its folder cannot be made.
function M:submit(kind, request)
  local now = fs.now()
  local id = new_id(now)
  while self.jobs[id] do id = new_id(now) end
  local job = {id = id, kind = kind, request = request, state = "queued", created = now, runs = 0}
  local ok, err = fs.mkdir(self:folder(job))
  if not ok then return nil, err end
  self.jobs[id] = job
  self.order[#self.order + 1] = job
  self.queue[#self.queue + 1] = job
  self:save(job)
  self.log("job %s: queued (%s)", id, kind)
  self.dirty = true
  return job
end

-- ---------------------------------------------------------------------------------------------
-- The feed: new lines of progress.jsonl and results.jsonl become events.

local MAX_LINE = 1024 * 1024

local function new_feed()
  return {p_off = 0, p_part = "", r_off = 0, r_part = "", events = {}, results = {},
          by_name = {}, last = nil}
end

-- New complete lines of `path` after byte `off` (`part`: an unfinished line read before).
local function read_lines(path, off, part)
  local st = fs.stat(path)
  if not st or st.size == off then return {}, off, part end
  if st.size < off then off, part = 0, "" end -- rewritten from the start
  local f = io.open(path, "rb")
  if not f then return {}, off, part end
  f:seek("set", off)
  local data = f:read(math.min(st.size - off, 16 * 1024 * 1024)) or ""
  f:close()
  off = off + #data
  data = part .. data
  local lines, pos = {}, 1
  while true do
    local nl = data:find("\n", pos, true)
    if not nl then break end
    lines[#lines + 1] = data:sub(pos, nl - 1)
    pos = nl + 1
  end
  part = data:sub(pos)
  if #part > MAX_LINE then part = "" end
  return lines, off, part
end

-- The part of a results line that the API shows (the step records and the machine stay in the
-- file and the report).
local SUMMARY = {"name", "status", "error", "recipe", "order", "metrics", "seed", "minutes"}
local function summarize(r)
  local s = {}
  for _, k in ipairs(SUMMARY) do s[k] = r[k] end
  return s
end

local function sse(id, name, data)
  return (id and ("id: " .. id .. "\n") or "") .. "event: " .. name .. "\ndata: " .. data .. "\n\n"
end

function M:publish(job, name, data)
  local feed = job.feed
  feed.events[#feed.events + 1] = {name = name, data = data}
  self:broadcast(job, sse(#feed.events, name, data))
end

function M:broadcast(job, text)
  local subs = job.subs
  if not subs then return end
  for i = #subs, 1, -1 do
    if not subs[i]:write(text) then
      subs[i]:close()
      table.remove(subs, i)
    end
  end
end

--- Reads what the search wrote since the last call and publishes it.
function M:refresh(job)
  job.feed = job.feed or new_feed()
  local feed, dir = job.feed, self:folder(job)
  local lines
  lines, feed.p_off, feed.p_part = read_lines(dir .. "/progress.jsonl", feed.p_off, feed.p_part)
  for _, line in ipairs(lines) do
    local ok, ev = pcall(json.decode, line)
    if ok and type(ev) == "table" then
      feed.last = ev
      self:publish(job, "progress", json.encode(ev))
    end
  end
  lines, feed.r_off, feed.r_part = read_lines(dir .. "/results.jsonl", feed.r_off, feed.r_part)
  for _, line in ipairs(lines) do
    local ok, r = pcall(json.decode, line)
    if ok and type(r) == "table" then
      local s = summarize(r)
      local at = type(s.name) == "string" and feed.by_name[s.name]
      if at then
        feed.results[at] = s -- a resumed run measured it again
      else
        feed.results[#feed.results + 1] = s
        if type(s.name) == "string" then feed.by_name[s.name] = #feed.results end
      end
      self:publish(job, "result", json.encode(s))
    end
  end
end

--- The job as the API shows it; with `full`, its results so far.
function M:view(job, full)
  if full or not job.feed then self:refresh(job) end
  local last = job.feed.last
  local progress = json.null
  if last then
    progress = {event = last.event, stage = last.stage, config = last.config, done = last.done,
                total = last.total, eta_s = last.eta_s, message = last.message, t = last.t}
  end
  local base = "/jobs/" .. job.id
  local v = {id = job.id, kind = job.kind, state = job.state, request = job.request,
             created = job.created, started = job.started or json.null,
             finished = job.finished or json.null, runs = job.runs, error = job.error or json.null,
             exit = job.exit or json.null, progress = progress,
             report = exists(self:folder(job) .. "/report.html"),
             urls = {self = base, events = base .. "/events", report = base .. "/report",
                     resume = base .. "/resume"}}
  if full then
    v.results = setmetatable({}, json.array_mt)
    for i, r in ipairs(job.feed.results) do v.results[i] = r end
  end
  return v
end

local function state_text(self, job)
  return json.encode({id = job.id, state = job.state, error = job.error or json.null,
                      report = exists(self:folder(job) .. "/report.html")})
end

--- Sends a job's events after `last_id` to a new stream, then keeps it subscribed until the job
--- ends (a finished job's stream ends at once).
function M:subscribe(job, stream, last_id)
  self:refresh(job)
  local events = job.feed.events
  local parts = {"retry: 3000\n\n"}
  for i = (last_id or 0) + 1, #events do parts[#parts + 1] = sse(i, events[i].name, events[i].data) end
  parts[#parts + 1] = sse(nil, "state", state_text(self, job))
  if TERMINAL[job.state] then parts[#parts + 1] = sse(nil, "end", state_text(self, job)) end
  if not stream:write(table.concat(parts)) or TERMINAL[job.state] then
    stream:close()
    return
  end
  job.subs = job.subs or {}
  job.subs[#job.subs + 1] = stream
end

function M:set_state(job, state)
  job.state = state
  self:save(job)
  self:broadcast(job, sse(nil, "state", state_text(self, job)))
  if TERMINAL[state] then
    self:broadcast(job, sse(nil, "end", state_text(self, job)))
    for _, s in ipairs(job.subs or {}) do s:close() end
    job.subs = nil
  end
end

-- ---------------------------------------------------------------------------------------------
-- Running

-- The search's command line for a job.
function M:argv(job)
  local r, dir = job.request, self:folder(job)
  local argv = {self.exe, "script", self.script}
  if r.model_name ~= "default" then
    local m = self.catalog and self.catalog:model(r.model_name)
    argv[#argv + 1] = "--model"
    argv[#argv + 1] = m and m.arg or r.model_name
  end
  for _, kv in ipairs({{"--task", r.dataset_name}, {"--criterion", r.criterion}}) do
    argv[#argv + 1], argv[#argv + 2] = kv[1], kv[2]
  end
  if type(r.configurations) == "table" and #r.configurations > 0 then
    argv[#argv + 1] = "--configs"
    argv[#argv + 1] = table.concat(r.configurations, ",")
  end
  if r.quick then argv[#argv + 1] = "--quick" end
  if job.resume_next and exists(dir .. "/meta.json") then
    argv[#argv + 1], argv[#argv + 2] = "--resume", dir
  else
    argv[#argv + 1], argv[#argv + 2] = "--out", dir
  end
  return argv
end

function M:start(job)
  local argv = self:argv(job)
  local ok, proc = pcall(fs.spawn, argv, {log = self:folder(job) .. "/output.log", group = true,
                                          death_signal = "TERM"})
  job.started, job.runs = fs.now(), (job.runs or 0) + 1
  job.finished, job.exit, job.error = nil, nil, nil
  if not ok then
    job.error = "cannot start the search: " .. tostring(proc)
    job.finished = fs.now()
    self.log("job %s: %s", job.id, job.error)
    self:set_state(job, "failed")
    return
  end
  job.proc, job.pid = proc, proc:pid()
  job.resume_next = nil
  job.cancel_requested, job.shutdown = nil, nil
  self.running[job.id] = job
  self:refresh(job)
  self.log("job %s: started (pid %d)", job.id, job.pid)
  self:set_state(job, "running")
end

-- The last non-empty line of the child's output, for a failure message.
local function last_output_line(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local size = f:seek("end")
  f:seek("set", math.max(0, size - 4096))
  local text = f:read("a") or ""
  f:close()
  local last
  for line in text:gmatch("[^\n]+") do
    if line:match("%S") then last = line end
  end
  return last
end

local SIGNAL_NAMES = {[1] = "SIGHUP", [2] = "SIGINT", [4] = "SIGILL", [6] = "SIGABRT",
                      [7] = "SIGBUS", [8] = "SIGFPE", [9] = "SIGKILL", [11] = "SIGSEGV",
                      [15] = "SIGTERM"}

function M:finish(job, how)
  self:refresh(job)
  self.running[job.id] = nil
  job.proc:free()
  job.proc = nil
  job.finished = fs.now()
  job.exit = {code = how.exited and how.code or json.null,
              signal = how.exited and json.null or (SIGNAL_NAMES[how.signal] or how.signal)}
  local last = job.feed.last
  local state
  if job.cancel_requested then
    state = "cancelled"
  elseif job.shutdown then
    state = "interrupted"
    job.error = "the server stopped while the job ran"
  elseif how.exited and how.code == 0 then
    state = "done"
  elseif not how.exited then
    state = "failed"
    job.error = string.format("the search crashed (%s)", SIGNAL_NAMES[how.signal] or
                              ("signal " .. how.signal))
  else
    state = "failed"
    local msg = last and last.event == "error" and last.message
                or last_output_line(self:folder(job) .. "/output.log") or "no message"
    job.error = string.format("%s (exit status %d)", msg, how.code)
  end
  self.log("job %s: %s%s", job.id, state, job.error and (": " .. job.error) or "")
  self:set_state(job, state)
end

--- One turn of the loop: reaps and reads the running jobs, starts queued ones, keeps streams
--- alive. Returns the number of jobs still running.
function M:tick()
  local now = fs.now()
  self.dirty = nil
  for _, job in pairs(self.running) do
    local how = job.proc:poll()
    if how then self:finish(job, how) else self:refresh(job) end
  end
  while not self.stopping and #self.queue > 0 and self:counts().running < self.max_running do
    self:start(table.remove(self.queue, 1))
  end
  if now - self.last_heartbeat >= self.heartbeat_s then
    self.last_heartbeat = now
    for _, job in pairs(self.jobs) do
      if job.subs then self:broadcast(job, ": keep-alive\n\n") end
    end
  end
  return self:counts().running
end

--- DELETE: returns the HTTP status and the job (or an error message).
function M:cancel(job)
  if job.state == "queued" then
    for i, q in ipairs(self.queue) do
      if q == job then table.remove(self.queue, i) break end
    end
    job.finished = fs.now()
    self.log("job %s: cancelled while queued", job.id)
    self:set_state(job, "cancelled")
    return 200, job
  elseif job.state == "running" then
    job.cancel_requested = true
    self.dirty = true
    job.proc:signal("TERM")
    self.log("job %s: cancelling (SIGTERM sent; the running configuration finishes first)", job.id)
    self:set_state(job, "cancelling")
    return 202, job
  elseif job.state == "cancelling" then
    job.proc:signal("KILL")
    self.log("job %s: cancelled again, SIGKILL sent", job.id)
    return 202, job
  end
  return 409, string.format("job %s is already %s", job.id, job.state)
end

--- POST resume: returns the HTTP status and the job (or an error message).
function M:resume(job)
  if not RESUMABLE[job.state] then
    return 409, string.format("job %s is %s; only an interrupted, cancelled or failed job can "
                              .. "be resumed", job.id, job.state)
  end
  if job.pid and fs.alive(job.pid, self:folder(job)) then
    return 409, string.format("job %s: its previous run (pid %d) is still stopping", job.id, job.pid)
  end
  job.resume_next = true
  job.error, job.exit, job.finished = nil, nil, nil
  self.queue[#self.queue + 1] = job
  self.log("job %s: queued again to resume", job.id)
  self.dirty = true
  self:set_state(job, "queued")
  return 202, job
end

--- Stops starting jobs and sends SIGTERM (`hard`: SIGKILL) to the running ones, which then end
--- as interrupted. Returns the number still running.
function M:shutdown(hard)
  self.stopping = true
  for _, job in pairs(self.running) do
    job.shutdown = true
    job.proc:signal(hard and "KILL" or "TERM")
  end
  return self:counts().running
end

--- Ends every stream (the server is closing).
function M:close_streams()
  for _, job in pairs(self.jobs) do
    for _, s in ipairs(job.subs or {}) do s:close() end
    job.subs = nil
  end
end

return M
