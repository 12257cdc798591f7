-- A stand-in for experiments/search.lua that follows the file contract of the search command
-- (docs/serve.md, "The jobs") in seconds instead of minutes, for the tests of `chai serve`:
-- meta.json, progress.jsonl events, results.jsonl lines shaped like chai.ktq.measure's, a
-- self-contained report.html, --resume, exit statuses 0/1/2, and a clean stop on SIGTERM.
--
--   chai script tests/serve/fake_search.lua --task sst2 --criterion accuracy --out DIR [--quick]
--
-- Knobs (environment): FAKE_SEARCH_DELAY seconds per stage (default 0.1 with --quick, else 0.6);
-- FAKE_SEARCH_CRASH=NAME dies of SIGSEGV when it reaches configuration NAME;
-- FAKE_SEARCH_FAIL=NAME records NAME as failed; FAKE_SEARCH_ERROR=NAME exits 1 with an "error"
-- event when it reaches NAME; FAKE_SEARCH_BURN=1 spends each stage multiplying matrices on every
-- core instead of sleeping (CPU-bound like a real search, for scripts/bench/serve.sh).
local core = require "chai.core"
local fs, json = core.serve, core.json

local KNOWN = {["--model"] = true, ["--task"] = true, ["--criterion"] = true, ["--configs"] = true,
               ["--out"] = true, ["--resume"] = true, ["--seed"] = true}
local o = {configs = "baseline,chai_base,chai_quant,chai_target,chai_kd,chai_ktq", seed = "0"}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--quick" then
    o.quick = true
  elseif KNOWN[a] and arg[i + 1] then
    o[a:sub(3)] = arg[i + 1]
    i = i + 1
  else
    io.stderr:write("search: unknown or incomplete option '", a, "'\n")
    os.exit(2)
  end
  i = i + 1
end
for _, need in ipairs({"task", "criterion"}) do
  if not o[need] then io.stderr:write("search: --", need, " is required\n") os.exit(2) end
end
local dir = o.resume or o.out
if not dir then io.stderr:write("search: --out or --resume is required\n") os.exit(2) end
fs.mkdir(dir)

local function append(name, value)
  local f = assert(io.open(dir .. "/" .. name, "ab"))
  f:write(json.encode(value), "\n")
  f:close()
end

local done_ok = {}
if o.resume then
  local f = io.open(dir .. "/meta.json", "rb")
  local meta = f and json.decode(f:read("a"))
  if f then f:close() end
  if not meta then io.stderr:write("search: --resume ", dir, ": no meta.json\n") os.exit(2) end
  if meta.task ~= o.task or meta.model ~= (o.model or "default") then
    io.stderr:write("search: --resume ", dir, " holds model ", tostring(meta.model), " task ",
                    tostring(meta.task), ", not ", o.model or "default", " ", o.task, "\n")
    os.exit(2)
  end
  local rf = io.open(dir .. "/results.jsonl", "rb")
  for line in (rf and rf:read("a") or ""):gmatch("[^\n]+") do
    local ok, r = pcall(json.decode, line)
    if ok and r.status == "ok" then done_ok[r.name] = true end
  end
  if rf then rf:close() end
end

local configs = {}
for name in o.configs:gmatch("[^,]+") do configs[#configs + 1] = name end
local f = assert(io.open(dir .. "/meta.json", "wb"))
f:write(json.encode({model = o.model or "default", task = o.task, criterion = o.criterion,
                     configs = configs, quick = o.quick == true, seed = tonumber(o.seed),
                     args = arg, started = os.time(), chai_version = require("chai").version}))
f:close()

fs.stop_signals()
local delay = tonumber(os.getenv("FAKE_SEARCH_DELAY") or "") or (o.quick and 0.1 or 0.6)
local total = #configs
local function event(e)
  e.t = fs.now()
  e.total = total
  append("progress.jsonl", e)
end
local function stopped() return fs.stop_requested() > 0 end
local function wait(seconds)
  if os.getenv("FAKE_SEARCH_BURN") ~= "1" then return fs.sleep(seconds) end
  local chai = require "chai"
  local a = chai.randn({512, 512}, {seed = 1})
  local t_end = fs.now() + seconds
  while fs.now() < t_end and not stopped() do a:matmul(a):free() end
end

event({event = "start", done = 0, message = "fake search of " .. total .. " configurations"})
local finished = 0
for k, name in ipairs(configs) do
  if stopped() then break end
  if not done_ok[name] then
    if os.getenv("FAKE_SEARCH_CRASH") == name then os.execute("kill -SEGV " .. fs.pid()) end
    if os.getenv("FAKE_SEARCH_ERROR") == name then
      event({event = "error", done = finished, message = "the fake search was told to fail at " .. name})
      io.stderr:write("search: the fake search was told to fail at ", name, "\n")
      os.exit(1)
    end
    for _, stage in ipairs({"build", "measure"}) do
      event({event = "stage", config = name, stage = stage, done = finished,
             eta_s = (total - finished) * 2 * delay})
      wait(delay)
    end
    local failed = os.getenv("FAKE_SEARCH_FAIL") == name
    local acc = 0.80 - 0.01 * k
    append("results.jsonl", {
      name = name, status = failed and "failed" or "ok",
      error = failed and "the fake search was told to fail" or nil,
      recipe = {name = name}, order = {name}, seed = tonumber(o.seed), minutes = delay / 30,
      metrics = not failed and {
        accuracy = {value = acc, low = acc - 0.03, high = acc + 0.03, n = 872},
        paired = {difference = acc - 0.79, low = acc - 0.81, high = acc - 0.77},
        latency_ms = {p50 = 10 / k, p90 = 12 / k, p99 = 15 / k},
        throughput = {{batch_size = 16, sentences_per_s = 100 * k},
                      {batch_size = 64, sentences_per_s = 120 * k}},
        weight_bytes = {total = 4e6 / k}, kv_bytes_per_token = 9216 // k} or nil,
      records = {{step = "fake", seconds = delay}}})
    event({event = failed and "config_failed" or "config_done", config = name, done = finished + 1})
  end
  finished = finished + 1
end

local rf = io.open(dir .. "/results.jsonl", "rb")
local rows = {}
for line in (rf and rf:read("a") or ""):gmatch("[^\n]+") do
  local r = json.decode(line)
  rows[#rows + 1] = "<tr><td>" .. r.name .. "</td><td>" .. r.status .. "</td></tr>"
end
if rf then rf:close() end
local report = assert(io.open(dir .. "/report.html", "wb"))
report:write("<!doctype html><html><head><meta charset=\"utf-8\"><title>fake search report</title>",
             "</head><body><h1>Fake search</h1><table id=\"results\">", table.concat(rows),
             "</table><script>document.title += ' (' + document.querySelectorAll('tr').length",
             " + ' rows)';</script></body></html>\n")
report:close()
if stopped() then
  event({event = "stopped", done = finished, message = "stopped by a signal"})
else
  event({event = "done", done = finished, message = "finished"})
end
