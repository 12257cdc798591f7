-- chai.search: the main job. `chai script experiments/search.lua [options]` searches CHAI,
-- quantization, targeted fine-tuning and distillation configurations of a model on a task,
-- measures each one, and writes an output folder: meta.json, results.jsonl (one line per finished
-- configuration, appended as it finishes), progress.jsonl, search.log, sensitivity.json,
-- report.html (report.md with --format md) and best/ (the chosen configuration as a model folder).
-- See docs/search.md; the folder's layout is a contract with chai serve and the MPI search.
--
--   local search = require "chai.search"
--   local status = search.main({"--quick", "--out", "results/smoke"})   -- what the script does
--   search.run(options, {backend = my_backend})                         -- with another backend
--
-- The work on models goes through a backend (lua/chai/search_ktq.lua: chai.ktq's recipes and
-- measurements); the tests give a fake one. A backend is a table of functions:
--   defaults()                      step name → the recipes' default options
--   validate(o)                     (optional) raises for options wrong before any work (a
--                                     --model folder that is not a model)
--   setup(o, hooks)                 → ctx {reference =, task =, model = (its identity), info =,
--                                     quick = {data =, steps =} (what --quick changes)}
--   unavailable(config)             → why this build cannot run it, or nil
--   check(config, ctx)              raises when the recipe is wrong for this model and task
--   sensitivity(ctx, hooks)         → {layers =, methods = {{method =, scores =, ...}}}
--   run(config, ctx, hooks)         → {model =, records =, metrics =, minutes =} (hooks.measure
--                                     false: build only)
--   save(model, dir)                writes a model folder chai.opt.load opens
local core = require "chai.core"
local args_mod = require "chai.search_args"
local space = require "chai.search_space"
local store_mod = require "chai.search_store"
local pick = require "chai.search_pick"
local progress_mod = require "chai.search_progress"
local group_mod = require "chai.search_group"

local M = {}

M.space, M.pick, M.store = space, pick, store_mod
M.parse = args_mod.parse
M.usage = args_mod.usage
M.fail = args_mod.fail
M.prog = args_mod.prog

local fail = args_mod.fail
local json = core.json
-- Test-only hook (tests/mpi/search_mpi.lua): the configuration of this name raises instead of
-- running, to check that a failed configuration is reported and the others finish.
local TEST_FAIL = os.getenv("CHAI_SEARCH_TEST_FAIL")

--- The exit status and one-line message of an error caught from M.run: a failure raised for the
--- user (status 2 for options, 1 for the rest) keeps its own; anything else is status 1 with the
--- error's message.
function M.failure(err)
  if require("chai.cli").is_failure(err) then return err.status, err.message end
  local msg = tostring(err):gsub("^[^%s:]+%.lua:%d+: ", "")
  return 1, M.prog .. ": " .. msg
end

-- ---------------------------------------------------------------------------------------------
-- The machine a result was measured on

local function first_line(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  if not p then return nil end
  local line = p:read("l")
  p:close()
  return line ~= "" and line or nil
end

local function cpu_model()
  local f = io.open("/proc/cpuinfo", "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text:match("model name%s*:%s*([^\n]+)")
end

local git_cache
--- The git commit of the chai checkout this module runs from ("<sha>-dirty" with uncommitted
--- changes to tracked files), or nil for an install without git.
function M.git_commit()
  if git_cache ~= nil then return git_cache or nil end
  git_cache = false
  local src = package.searchpath("chai.search", package.path)
  local root = src and src:match("^(.*)/lua/chai/search%.lua$")
  if root then
    local q = "'" .. root:gsub("'", "'\\''") .. "'"
    local sha = first_line("git -C " .. q .. " rev-parse HEAD")
    if sha and sha:match("^%x+$") then
      local dirty = first_line("git -C " .. q .. " status --porcelain --untracked-files=no")
      git_cache = sha .. (dirty and "-dirty" or "")
    end
  end
  return git_cache or nil
end

--- What the figures were measured on: CPU, SIMD level and features, the kernel each weight format
--- uses (chai.cpu().kernels), the OpenBLAS core, threads, chai's version and git commit.
function M.machine()
  local cpu = core.cpu()
  return {cpu = cpu_model(), vendor = cpu.vendor, simd = cpu.simd, features = cpu.features,
          kernels = cpu.kernels, blas_core = cpu.blas_core, blas_library = cpu.blas_library,
          threads = core.threads(), chai_version = core.version, git_commit = M.git_commit(),
          host = first_line("uname -n")}
end

-- ---------------------------------------------------------------------------------------------
-- Options and the output folder

local function abspath(path)
  if path:sub(1, 1) == "/" then return path end
  local cwd = os.getenv("PWD") or first_line("pwd") or "."
  return (cwd .. "/" .. path):gsub("/%./", "/"):gsub("/%.$", "")
end

--- The identity of a --model value as meta.json records it: an absolute path for a folder, the
--- value itself for a Hub id, "default" when not given.
function M.model_key(spec)
  if spec == nil then return "default" end
  if store_mod.is_dir(spec) then return abspath(spec) end
  return spec
end

-- A name for the default output folder: the model's folder name or Hub id with / → -.
local function model_label(spec)
  if spec == nil or spec == "default" then return "sst2-student" end
  local base = spec:gsub("/+$", "")
  if store_mod.is_dir(base) then base = base:match("([^/]+)$") or base end
  return (base:gsub("[^%w._-]", "-"))
end

local DEFAULTS = {task = "sst2", criterion = "pareto", seed = 1}

-- The options of this run after --resume: the earlier run's (meta.args) with the ones given now on
-- top; model, task, seed and --quick must agree with the folder's.
local function merge_resume(o, meta, dir)
  local prev = {}
  if type(meta.args) == "table" then
    local ok, p = pcall(args_mod.parse, meta.args)
    if ok then prev = p end
  end
  local function refuse(what, theirs, ours)
    fail(("%s: --resume %s: that folder holds a search of %s %s; this run asks for %s (start a new "
          .. "search with --out instead)"):format(M.prog, dir, what, tostring(theirs), tostring(ours)), 1)
  end
  if o.model ~= nil and M.model_key(o.model) ~= meta.model_key then refuse("model", meta.model_key, M.model_key(o.model)) end
  if o.task ~= nil and o.task ~= meta.task then refuse("task", meta.task, o.task) end
  if o.seed ~= nil and o.seed ~= meta.seed then refuse("seed", meta.seed, o.seed) end
  if o.quick and not meta.quick then refuse("--quick", "false (a full search)", "--quick") end
  local out = {given = o.given, grid = #o.grid > 0 and o.grid or (prev.grid or {}),
               model = meta.model_spec ~= "default" and meta.model_spec or nil, task = meta.task,
               seed = meta.seed, quick = meta.quick, resume = dir, budget = o.budget,
               criterion = o.criterion or meta.criterion, format = o.format or prev.format,
               configs = o.configs, orders = o.orders}
  if not o.given.configs and not o.given.orders then out.configs, out.orders = prev.configs, prev.orders end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- Time estimates (the ETA)

local Estimates = {}
Estimates.__index = Estimates

local function new_estimates() return setmetatable({step = {}, measure = {}, config = {}}, Estimates) end

local function add(list, x) if type(x) == "number" and x >= 0 then list[#list + 1] = x end end
local function mean(list)
  if #list == 0 then return nil end
  local s = 0
  for _, x in ipairs(list) do s = s + x end
  return s / #list
end

function Estimates:learn(result)
  if type(result) ~= "table" or result.status ~= "ok" then return end
  local total = 0
  for _, r in ipairs(result.records or {}) do
    if type(r) == "table" and type(r.step) == "string" and type(r.seconds) == "number" then
      self.step[r.step] = self.step[r.step] or {}
      add(self.step[r.step], r.seconds)
      total = total + r.seconds
    end
  end
  local ms = type(result.metrics) == "table" and result.metrics.seconds or nil
  add(self.measure, ms)
  add(self.config, total + (ms or 0))
end

--- Predicted seconds for a configuration, or nil before anything is known.
function Estimates:predict(cfg)
  local m = mean(self.measure)
  if not m then return nil end
  local known = {}
  for _, list in pairs(self.step) do known[#known + 1] = mean(list) end
  local fallback = mean(known)
  local s = m
  for _, step in ipairs(cfg.recipe.steps or {}) do
    local e = self.step[step] and mean(self.step[step]) or fallback
    if not e then return nil end
    s = s + e
  end
  return s
end

-- ---------------------------------------------------------------------------------------------
-- Earlier searches beside this one

local function deep_eq(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

--- Finished configurations of earlier searches that this one can take instead of running them:
--- from the other folders beside `dir` (the same parent) whose meta.json has the same model, task,
--- seed and --quick, measured by the same chai (version and git commit) on the same CPU with the
--- same threads, with a recipe equal to the configuration's. Returns name → {result =, from =}
--- (the most recently finished when several match).
function M.earlier_results(dir, meta, configs, machine)
  local parent = dir:match("^(.*)/[^/]+/*$") or "."
  local p = io.popen("ls -1 '" .. parent:gsub("'", "'\\''") .. "' 2>/dev/null")
  local names = {}
  if p then
    for name in p:lines() do names[#names + 1] = name end
    p:close()
  end
  local want = {}
  for _, c in ipairs(configs) do want[c.name] = c end
  local out = {}
  local own = dir:gsub("/+$", "")
  for _, name in ipairs(names) do
    local path = parent .. "/" .. name
    if path ~= own and store_mod.exists(path .. "/meta.json") then
      local other = store_mod.open_existing(path)
      local ok, m = pcall(other.read_meta, other)
      if ok and m and m.model_key == meta.model_key and m.task == meta.task and m.seed == meta.seed
        and (m.quick or false) == (meta.quick or false) then
        for cname, r in pairs(store_mod.latest((other:read_results()))) do
          local c = want[cname]
          local rm = type(r.machine) == "table" and r.machine or {}
          if c and r.status == "ok" and not r.reused_from and type(r.recipe) == "table" and deep_eq(r.recipe, c.recipe)
            and rm.cpu == machine.cpu and rm.threads == machine.threads and rm.chai_version == machine.chai_version
            and rm.git_commit == machine.git_commit then
            local prev = out[cname]
            if not prev or (r.finished or 0) > (prev.result.finished or 0) then out[cname] = {result = r, from = path} end
          end
        end
      end
    end
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- The chosen model (best/)

-- best/search.json names the configuration best/ holds.
local function best_name(store)
  local text = store_mod.read_all(store.best_dir .. "/search.json")
  if not text then return nil end
  local ok, obj = pcall(json.decode, text)
  return ok and type(obj) == "table" and obj.name or nil
end

-- Writes a model as best/ through best.tmp/ (a half-written folder never takes best/'s place).
local function save_best(store, backend, model, result, criterion, why)
  local tmp = store.dir .. "/best.tmp"
  store_mod.rm_rf(tmp)
  store_mod.mkdir(tmp)
  backend.save(model, tmp)
  core.files.replace(tmp .. "/search.json", json.encode(store_mod.plain({
    name = result.name, criterion = criterion, why = why, recipe = result.recipe,
    order = store_mod.array(result.order or {}), seed = result.seed,
    accuracy = type(result.metrics) == "table" and result.metrics.accuracy or nil,
    saved = os.time()}), {indent = true}) .. "\n")
  store_mod.rm_rf(store.best_dir)
  local ok, err = os.rename(tmp, store.best_dir)
  if not ok then error("cannot move " .. tmp .. " to " .. store.best_dir .. ": " .. tostring(err), 0) end
end

-- ---------------------------------------------------------------------------------------------
-- The run

local function default_out(o)
  return ("results/search-%s-%s-%s"):format(model_label(o.model), o.task or DEFAULTS.task, os.date("%Y%m%d-%H%M%S"))
end

-- Results in the order of this run's configurations, then any others the folder holds.
local function ordered(results_by_name, configs)
  local out, seen = {}, {}
  for _, c in ipairs(configs) do
    local r = results_by_name[c.name]
    if r then out[#out + 1] = r; seen[c.name] = true end
  end
  local rest = {}
  for name, r in pairs(results_by_name) do if not seen[name] then rest[#rest + 1] = r end end
  table.sort(rest, function(a, b) return a.name < b.name end)
  for _, r in ipairs(rest) do out[#out + 1] = r end
  return out
end

--- Runs a search. o: parsed options (M.parse); env: backend (default chai.search_ktq), stdout,
--- stderr, tty (draw the progress bar; default: stderr is a terminal), signals (false: do not take
--- SIGINT/SIGTERM; default true), should_stop (function → true to stop between configurations),
--- report (false: no report files). Returns a summary {status = "done"|"stopped", dir =, results =,
--- chosen =}; raises a failure (M.failure) on errors, after writing an "error" event.
--- Under mpirun (chai.mpi.size() > 1) every rank calls it with the same options: the
--- configurations are dealt to the ranks and gathered on rank 1, which writes the folder and
--- returns the whole summary (the others return theirs with their own results only); see
--- lua/chai/search_group.lua and docs/distributed.md#distributed-search.
function M.run(o, env)
  env = env or {}
  local backend = env.backend or require("chai.search_ktq")
  local stdout = env.stdout or io.stdout
  local stderr = env.stderr or io.stderr
  local signals = env.signals ~= false and core.signals or nil
  local started = core.bench.now()
  local argv = o.argv or {}
  local group = env.group or group_mod.new()
  local rank, writer = group.rank, group.rank == 1
  group:agree(argv, "the options of experiments/search.lua")

  -- The output folder: a new one (never one that holds a search already), or the one resumed.
  -- Rank 1 decides (and names the default folder: the others' clocks may read another second).
  local decided = group:decide(function()
    local dir, meta_prev
    if o.resume then
      dir = o.resume
      if not store_mod.is_dir(dir) then fail(("%s: --resume %s: no such folder"):format(M.prog, dir), 1) end
      meta_prev = store_mod.open(dir):read_meta()
      if not meta_prev then
        fail(("%s: --resume %s: no meta.json there, so it is not a search's folder"):format(M.prog, dir), 1)
      end
      o = merge_resume(o, meta_prev, dir)
    else
      dir = o.out or default_out(o)
      if store_mod.exists(dir .. "/meta.json") or store_mod.exists(dir .. "/results.jsonl") then
        fail(("%s: --out %s already holds a search; continue it with --resume %s, or choose another "
              .. "folder (finished results are never overwritten)"):format(M.prog, dir, dir), 1)
      end
    end
    o.task = o.task or DEFAULTS.task
    o.criterion = o.criterion or DEFAULTS.criterion
    o.seed = o.seed or DEFAULTS.seed
    if backend.validate then backend.validate(o) end
    local ok_open, err_open = pcall(store_mod.open, dir)
    if not ok_open then fail(M.prog .. ": " .. tostring(err_open), 1) end
    return {dir = dir, meta_prev = meta_prev, o = o}
  end, M.failure)
  local dir, meta_prev = decided.dir, decided.meta_prev
  o = decided.o
  -- Rank 1 writes the folder; another rank keeps its finished configurations and its lines in
  -- files of its own there (search_store.open_rank) until rank 1 has gathered them.
  local store = writer and store_mod.open_existing(dir) or store_mod.open_rank(dir, rank)

  local tty = env.tty
  if tty == nil then tty = core.stderr_isatty and core.stderr_isatty() or false end
  local null_out = {write = function(self) return self end, flush = function() end}
  local prog = progress_mod.new({tty = writer and tty, out = writer and stderr or null_out,
                                 log = function(line) store:log(line) end})
  -- A line that matters on every rank (a configuration finished or failed): rank 1 prints it with
  -- the others, the other ranks print it prefixed with their rank (their stage lines go to their
  -- log only, so the terminal stays readable).
  local function announce(line)
    prog:message(line)
    if not writer then
      stderr:write(("%s (rank %d of %d): %s\n"):format(M.prog, rank, group.size, line))
      stderr:flush()
    end
  end
  local estimates = new_estimates()
  local total, done_count = 0, 0
  local function eta_now(remaining, current_started)
    local s = 0
    for _, c in ipairs(remaining) do
      local p = estimates:predict(c)
      if not p then return nil end
      s = s + p
    end
    if current_started then s = s - (core.bench.now() - current_started) end
    return math.max(0, s)
  end
  local eta = nil
  local function event(name, fields)
    local ev = {event = name, done = done_count, total = total, eta_s = eta or json.null}
    for k, v in pairs(fields or {}) do ev[k] = v end
    store:event(ev)
  end
  local function stage(config, name)
    prog:stage_begin(config, name)
    event("stage", {config = config, stage = name})
  end
  -- Ends the run with a failure for the user, after recording it.
  local function stop_with(message, status)
    prog:finish()
    event("error", {message = message})
    store:log("error: " .. message)
    fail(message, status or 1)
  end

  store:log(("%s %s"):format(o.resume and "resuming" or "starting", table.concat(argv, " ")))
  prog:message(("%s the search in %s"):format(o.resume and "resuming" or "starting", dir))
  event("start", {message = table.concat(argv, " ")})

  if signals then
    signals.catch()
    if o.budget then signals.alarm(o.budget * 60) end
  end
  local function interrupted()
    local sig = signals and signals.pending()
    if sig then return sig end
    if env.should_stop and env.should_stop() then return "request" end
    return nil
  end

  -- The model and the task: rank 1 first (it may train the default model and cache it), then the
  -- others, which load what rank 1 left. The verdict is rank 1's outcome: go, stopped, or failed.
  local ok_setup, ctx, verdict = group:in_turn(function()
    return backend.setup(o, {stage = function(name) stage(nil, name) end,
                             log = function(line) prog:message(line) end})
  end, function(ok, res)
    if ok then return {go = true} end
    local sig = interrupted()
    if sig then return {go = false, stopped = sig} end
    local status, msg = M.failure(res)
    return {go = false, status = status, message = msg}
  end)
  local setup_error -- this rank's own setup failed: its configurations are reported as failed
  if not writer and not verdict.go then
    if signals then signals.release() end
    if verdict.stopped then return {status = "stopped", dir = dir, results = {}} end
    group_mod.fail_shared(verdict.message, verdict.status)
  elseif not writer and not ok_setup then
    if interrupted() then
      ctx = nil
    else
      local _, msg = M.failure(ctx)
      setup_error = ("rank %d could not set up: %s"):format(rank, (msg:gsub("^" .. M.prog:gsub("%p", "%%%0") .. ": ", "")))
      announce(setup_error)
      ctx = nil
    end
  elseif not ok_setup then
    local sig = interrupted()
    if sig then
      -- Stopped (budget, signal) before any configuration: a clean stop, nothing to keep.
      prog:finish()
      local msg = ("%s while setting up (%s); nothing was measured yet"):format(
        sig == "SIGALRM" and "the budget ran out" or ("stopped by " .. sig), M.message(ctx))
      stderr:write(M.prog, ": ", msg, "\n")
      event("stopped", {message = msg})
      if signals then signals.release() end
      return {status = "stopped", dir = dir, results = {}}
    end
    local status, msg = M.failure(ctx)
    stop_with(msg, status)
  end

  -- The configurations, checked against this model and task before anything runs (by rank 1,
  -- whose verdict holds everywhere; every rank then builds the same list from the same options).
  local function make_configs(quick)
    return space.configs({configs = o.configs, orders = o.orders, grid = o.grid, seed = o.seed,
                          data = quick and quick.data, step_overrides = quick and quick.steps},
                         backend.defaults(ctx))
  end
  local checked = group:decide(function()
    local quick = o.quick and (ctx.quick or backend.quick) or nil
    local ok_space, configs = pcall(make_configs, quick)
    if not ok_space then stop_with(M.prog .. ": " .. tostring(configs), 2) end
    local skipped = {}
    for _, c in ipairs(configs) do
      local why = backend.unavailable(c, ctx)
      if why then
        skipped[c.name] = why
      else
        local ok, err = pcall(backend.check, c, ctx)
        if not ok then
          local knob = #c.knobs > 0 and " (--grid)" or ""
          stop_with(("%s: configuration %s%s: %s"):format(M.prog, c.name, knob, M.message(err)), 2)
        end
      end
    end
    return {quick = quick or false, skipped = skipped}
  end, M.failure)
  local configs = make_configs(checked.quick or nil)
  local skipped = checked.skipped
  total = #configs
  prog.total = total

  -- meta.json: written at the start of a new search; a resumed one adds its run.
  local machine = M.machine()
  if group:distributed() then machine.rank, machine.ranks = rank, group.size end
  -- Rank 1 writes meta.json, takes what finished before, and says what is left to run.
  local meta, prior = nil, {}
  local left_to_run = group:decide(function()
    local names = {}
    for _, c in ipairs(configs) do names[#names + 1] = c.name end
    local knob_text = {}
    for _, k in ipairs(o.grid or {}) do
      local vals = {}
      for _, v in ipairs(k.values) do vals[#vals + 1] = tostring(v) end
      knob_text[k.key] = vals
    end
    if meta_prev then
      meta = meta_prev
      local union, seen = {}, {}
      for _, n in ipairs(meta.configs or {}) do if not seen[n] then seen[n] = true; union[#union + 1] = n end end
      for _, n in ipairs(names) do if not seen[n] then seen[n] = true; union[#union + 1] = n end end
      meta.configs = union
      meta.criterion = o.criterion
      meta.resumed = meta.resumed or {}
      meta.resumed[#meta.resumed + 1] = {t = os.time(), args = argv, machine = machine,
                                         ranks = group:distributed() and group.size or nil}
    else
      local orders = o.orders
      if type(orders) == "table" then
        local list = {}
        for i, ord in ipairs(orders) do list[i] = table.concat(ord, "-") end
        orders = list
      end
      meta = {model = ctx.model, model_key = M.model_key(o.model), model_spec = o.model or "default",
              task = o.task, criterion = o.criterion, configs = names, orders = orders or "default",
              grid = knob_text, quick = o.quick or false, seed = o.seed, args = argv,
              started = os.time(), chai_version = core.version, git_commit = machine.git_commit,
              machine = machine, model_info = ctx.info, ranks = group:distributed() and group.size or nil}
    end
    local ok_meta, err_meta = pcall(store.write_meta, store, meta)
    if not ok_meta then stop_with(M.prog .. ": " .. M.message(err_meta), 1) end

    -- What finished before (a resumed search) is not run again; what earlier searches beside this
    -- one finished with the same recipe, model, task, seed, code and machine is taken from them.
    -- What ranks of a distributed run that stopped early kept in their own files comes in first.
    local ok_abs, absorbed = pcall(store.absorb_rank_files, store)
    if not ok_abs then stop_with(M.prog .. ": " .. M.message(absorbed), 1) end
    if absorbed > 0 then
      prog:message(("%d finished configurations taken from the ranks' files (results.rank<k>.jsonl)"):format(absorbed))
    end
    prior = store_mod.latest((store:read_results()))
    local earlier = M.earlier_results(dir, meta, configs, machine)
    local reused, sources = 0, {}
    for _, c in ipairs(configs) do
      local e = earlier[c.name]
      if e and not (prior[c.name] and prior[c.name].status == "ok") then
        local r = space.deep_copy(e.result)
        r.reused_from = e.from
        r.recipe.steps = store_mod.array(r.recipe.steps)
        r.order, r.knobs, r.records = store_mod.array(r.order), store_mod.array(r.knobs), store_mod.array(r.records)
        local ok_w, err_w = pcall(store.append_result, store, r)
        if not ok_w then stop_with(M.prog .. ": " .. M.message(err_w), 1) end
        prior[c.name] = r
        reused = reused + 1
        sources[e.from] = true
      end
    end
    if reused > 0 then
      local list = {}
      for from in pairs(sources) do list[#list + 1] = from end
      table.sort(list)
      prog:message(("%d finished configurations taken from %s (same model, task, seed, code and machine)"):format(
        reused, table.concat(list, ", ")))
      if not store:read_sensitivity() then
        for _, from in ipairs(list) do
          local text = store_mod.read_all(from .. "/sensitivity.json")
          if text and not store:read_sensitivity() then pcall(store.write_file, store, store.sensitivity_path, text) end
        end
      end
    end
    for _, r in pairs(prior) do estimates:learn(r) end
    local todo = {}
    for _, c in ipairs(configs) do
      if prior[c.name] and prior[c.name].status == "ok" then done_count = done_count + 1 else todo[#todo + 1] = c.name end
    end
    if done_count > 0 then
      prog:message(("%d of %d configurations already finished in %s"):format(done_count, total, dir))
    end
    return {todo = todo, model = meta.model}
  end, M.failure)
  local model_id = left_to_run.model
  local todo, left = {}, {}
  for _, n in ipairs(left_to_run.todo) do left[n] = true end
  for _, c in ipairs(configs) do if left[c.name] then todo[#todo + 1] = c end end
  done_count = total - #todo
  prog:update(done_count, eta_now(todo))

  -- Per-layer sensitivity of the unmodified model, by every method (for the report).
  if writer and not store:read_sensitivity() and backend.sensitivity and not interrupted() then
    stage(nil, "sensitivity")
    local ok, sens = pcall(backend.sensitivity, ctx, {stage = function(name) stage(nil, name) end})
    if ok and sens then
      local ok_w, err_w = pcall(store.write_sensitivity, store, sens)
      if not ok_w then stop_with(M.prog .. ": " .. M.message(err_w), 1) end
    elseif not ok and not interrupted() then
      prog:message("sensitivity not measured: " .. M.message(sens))
    end
  end

  local by_name = {}
  for name, r in pairs(prior) do by_name[name] = r end
  local function write_report()
    if env.report == false then return end
    local ok, err = pcall(function()
      local report = require "chai.report"
      report.write(store, {markdown = o.format == "md", configs = configs})
    end)
    if not ok then prog:message("report not written: " .. M.message(err)) end
  end

  local stopped = nil
  if not writer and not ok_setup and not setup_error then stopped = interrupted() or "SIGTERM" end
  local budget_end = o.budget and (started + o.budget * 60) or nil
  -- This rank's share (all of them in one process). In a distributed run each rank measures the
  -- unmodified model before its first configuration, and its lines carry those figures
  -- (rank_baseline) so that their timing ratios compare runs of one machine; rank 1 runs the
  -- baseline configuration itself first when it is left to run.
  local mine = group:share(todo)
  local rank_baseline, mine_done = nil, {}
  local function reference_figures(m)
    return {accuracy = m.accuracy, latency_ms = m.latency_ms, throughput = m.throughput,
            peak_rss_bytes = m.peak_rss_bytes, weight_bytes = m.weight_bytes, rank = rank}
  end
  for i, c in ipairs(stopped and {} or mine) do
    stopped = interrupted()
    if stopped then break end
    if group:distributed() and rank_baseline == nil and c.name ~= "baseline" and ctx then
      local cb
      for _, x in ipairs(configs) do if x.name == "baseline" then cb = x end end
      stage("baseline", "measure on this rank (the reference for its ratios)")
      local ok, res = pcall(backend.run, cb, ctx, {stage = function(name) stage("baseline", name) end, measure = true})
      if ok then
        rank_baseline = reference_figures(res.metrics)
        if res.model and res.model.free then res.model:free() end
      else
        stopped = interrupted()
        if stopped then break end
        rank_baseline = false
        announce("the baseline could not be measured on this rank (ratios use rank 1's): " .. M.message(res))
      end
    end
    local remaining = {table.unpack(mine, i)}
    eta = eta_now(remaining)
    local predicted = estimates:predict(c)
    if budget_end and predicted and core.bench.now() + predicted > budget_end then
      announce(("%s: skipped, %s predicted and %s of the budget left"):format(c.name,
               progress_mod.clock(predicted), progress_mod.clock(budget_end - core.bench.now())))
      event("stage", {config = c.name, stage = "skipped", message = "does not fit the budget"})
      goto continue
    end
    do
      local recipe = space.deep_copy(c.recipe)
      recipe.steps = store_mod.array(recipe.steps)
      local base = {name = c.name, base = c.base, recipe = recipe, order = store_mod.array(c.order and {table.unpack(c.order)} or {}),
                    knobs = store_mod.array(space.deep_copy(c.knobs)), seed = o.seed, machine = machine,
                    task = o.task, model = model_id}
      local result, model
      if skipped[c.name] or setup_error then
        result = base
        result.status, result.error = "failed", skipped[c.name] or setup_error
        announce(("%s: not run: %s"):format(c.name, result.error))
      else
        local t0 = core.bench.now()
        stage(c.name, "build")
        local ok, res = pcall(function()
          if TEST_FAIL and TEST_FAIL == c.name then
            error(("CHAI_SEARCH_TEST_FAIL=%s (a test hook) makes this configuration fail"):format(c.name), 0)
          end
          return backend.run(c, ctx, {stage = function(name) stage(c.name, name) end, measure = true})
        end)
        if not ok then
          stopped = interrupted()
          if stopped then break end
          result = base
          result.status, result.error = "failed", M.message(res)
          result.seconds = core.bench.now() - t0
          announce(("%s: failed: %s"):format(c.name, result.error))
        else
          result = base
          result.status, result.metrics, result.records = "ok", res.metrics, store_mod.array(res.records or {})
          result.minutes, result.seconds = res.minutes, core.bench.now() - t0
          model = res.model
          if group:distributed() and res.metrics then
            if c.name == "baseline" then
              rank_baseline = reference_figures(res.metrics)
            elseif rank_baseline then
              result.rank_baseline = rank_baseline
            end
          end
        end
      end
      result.finished = os.time()
      if writer then
        local ok_w, err_w = pcall(store.append_result, store, result)
        if not ok_w then
          local n = 0
          for _, r in pairs(by_name) do if r.status == "ok" then n = n + 1 end end
          stop_with(("%s: %s. The %d configurations finished before are kept in %s; free space and "
                     .. "continue with --resume %s"):format(M.prog, M.message(err_w), n, store.results_path, dir), 1)
        end
      else
        -- A copy for --resume in case the run ends before the gather; rank 1 writes the results.
        local ok_w, err_w = pcall(store.append_result, store, result)
        if not ok_w then prog:message("no copy kept in " .. store.results_path .. ": " .. M.message(err_w)) end
        mine_done[#mine_done + 1] = result
      end
      by_name[c.name] = result
      if result.status == "ok" then
        done_count = done_count + 1
        estimates:learn(result)
      end
      eta = eta_now({table.unpack(mine, i + 1)})
      prog:update(done_count, eta)
      local v = pick.values(result)
      if v then
        announce(("%s: accuracy %.2f%%%s, %.0f sentences/s @16, %.2f MB of weights"):format(
          c.name, 100 * v.accuracy, v.diff and (" (%+.2f vs baseline)"):format(100 * v.diff) or "",
          v.throughput or 0, (v.weight_bytes or 0) / 1e6))
      end
      event(result.status == "ok" and "config_done" or "config_failed",
            {config = c.name, message = result.error})
      -- The chosen configuration so far goes to best/ while its model is at hand (rank 1; another
      -- rank's choice is built again at the end).
      if model then
        local chosen, why = pick.best(ordered(by_name, configs), o.criterion)
        if writer and chosen and chosen.name == c.name then
          stage(c.name, "save best")
          local ok_s, err_s = pcall(save_best, store, backend, model, result, o.criterion, why)
          if not ok_s then stop_with(("%s: saving the chosen model to %s: %s"):format(M.prog, store.best_dir, M.message(err_s)), 1) end
        end
        if model.free then model:free() end
      end
      if writer then write_report() end
    end
    ::continue::
  end
  if not stopped then stopped = interrupted() end

  -- The gather: every rank gets here, whatever became of its configurations (their errors were
  -- caught above). Rank 1 appends the others' results in the configurations' order; then the
  -- others' own copies can go, and they are done.
  if group:distributed() then
    local gathered = group:collect({results = store_mod.array(mine_done), stopped = stopped or false})
    if writer then
      local index = {}
      for i, c in ipairs(configs) do index[c.name] = i end
      local incoming = {}
      for r = 2, #gathered do
        for _, res in ipairs(gathered[r].results or {}) do incoming[#incoming + 1] = res end
        if gathered[r].stopped and not stopped then stopped = gathered[r].stopped end
      end
      table.sort(incoming, function(a, b) return (index[a.name] or 0) < (index[b.name] or 0) end)
      for _, res in ipairs(incoming) do
        local ok_w, err_w = pcall(store.append_result, store, res)
        if not ok_w then
          stop_with(("%s: %s. The other ranks keep theirs in %s/results.rank<k>.jsonl; free space and "
                     .. "continue with --resume %s"):format(M.prog, M.message(err_w), dir, dir), 1)
        end
        by_name[res.name] = res
        if res.status == "ok" then done_count = done_count + 1 end
        event(res.status == "ok" and "config_done" or "config_failed",
              {config = res.name, rank = res.machine and res.machine.rank, message = res.error})
      end
      prog:update(done_count, nil)
      prog:message(("gathered from ranks 2 to %d: %d configuration%s"):format(group.size, #incoming,
                                                                               #incoming == 1 and "" or "s"))
    end
    group:share_value(true)
    if not writer then
      os.remove(store.results_path)
      prog:finish()
      if signals then signals.release() end
      return {status = stopped and "stopped" or "done", dir = dir, results = mine_done}
    end
  end

  -- The tables, the chosen model, the report.
  local results = ordered(by_name, configs)
  local chosen, why = pick.best(results, o.criterion)
  if chosen and not stopped and best_name(store) ~= chosen.name and chosen.reused_from then
    -- Taken from an earlier search: its best/ may hold it.
    local from = store_mod.open_existing(chosen.reused_from)
    if best_name(from) == chosen.name then
      local tmp = store.dir .. "/best.tmp"
      store_mod.rm_rf(tmp)
      local q = function(x) return "'" .. x:gsub("'", "'\\''") .. "'" end
      if os.execute("cp -r " .. q(from.best_dir) .. " " .. q(tmp)) then
        store_mod.rm_rf(store.best_dir)
        os.rename(tmp, store.best_dir)
      end
    end
  end
  if chosen and not stopped and best_name(store) ~= chosen.name then
    -- best/ holds another configuration (a resumed run, another criterion): build it again.
    local c
    for _, x in ipairs(configs) do if x.name == chosen.name then c = x end end
    if c and not skipped[c.name] then
      stage(c.name, "rebuild the chosen configuration")
      local ok, res = pcall(backend.run, c, ctx, {stage = function(name) stage(c.name, name) end, measure = false})
      if ok then
        local ok_s, err_s = pcall(save_best, store, backend, res.model, chosen, o.criterion, why)
        if res.model.free then res.model:free() end
        if not ok_s then stop_with(("%s: saving the chosen model: %s"):format(M.prog, M.message(err_s)), 1) end
      elseif interrupted() then
        stopped = interrupted()
      else
        prog:message("the chosen configuration could not be rebuilt: " .. M.message(res))
      end
    end
  end
  write_report()
  prog:finish()
  local base_result = by_name.baseline
  local text = {"", ("## Results: %s on %s (%s)"):format(meta.model or "?", o.task, dir), "",
                pick.table(results, base_result), "", "## Best configuration per criterion", "",
                pick.best_table(results, o.criterion), "", "## Pareto front (accuracy, throughput at batch 16, weight bytes)",
                "", pick.front_table(results), ""}
  if chosen then
    text[#text + 1] = ("Chosen (%s): %s, %s. Saved as %s (chai.opt.load opens it)."):format(
      o.criterion, chosen.name, why, store.best_dir)
  end
  text[#text + 1] = ("Report: %s%s"):format(store.report_path, o.format == "md" and (", " .. store.markdown_path) or "")
  stdout:write(table.concat(text, "\n"), "\n")
  stdout:flush()
  for _, line in ipairs(text) do store:log(line) end
  if signals then signals.release() end
  local finished = 0
  for _, r in pairs(by_name) do if r.status == "ok" then finished = finished + 1 end end
  if stopped then
    local why_stop = stopped == "SIGALRM" and "the budget ran out" or stopped == "request" and "asked to stop"
      or ("stopped by " .. stopped)
    local msg = ("%s: %d of %d configurations finished; continue with --resume %s"):format(why_stop, finished, total, dir)
    stderr:write(M.prog, ": ", msg, "\n")
    event("stopped", {message = msg})
    return {status = "stopped", dir = dir, results = results, chosen = chosen}
  end
  event("done", {message = ("%d of %d configurations finished in %.1f min"):format(finished, total,
                                                                                 (core.bench.now() - started) / 60)})
  return {status = "done", dir = dir, results = results, chosen = chosen}
end

--- An error's message without Lua's "file.lua:12: " position.
function M.message(err)
  local mt = type(err) == "table" and getmetatable(err)
  if mt and mt.__tostring then return tostring(err) end
  return (tostring(err):gsub("^[^%s:]+%.lua:%d+: ", ""))
end

--- The command: parses `args`, runs the search, returns the exit status (0 done or stopped
--- cleanly, 2 bad options, 1 other errors); messages go to env.stderr. env as for M.run.
function M.main(args, env)
  env = env or {}
  local stderr = env.stderr or io.stderr
  local ok, res = pcall(function()
    local ok_parse, o = pcall(args_mod.parse, args)
    if not ok_parse then
      -- Every rank of a distributed search parses the same arguments: rank 1 alone says what is wrong.
      if type(o) == "table" then o.shared = true end
      error(o, 0)
    end
    if o.help then
      (env.stdout or io.stdout):write(args_mod.usage, "\n")
      return 0
    end
    o.argv = args
    M.run(o, env)
    return 0
  end)
  if env.signals ~= false then core.signals.release() end
  if ok then return res end
  local status, msg = M.failure(res)
  -- A failure every rank of a distributed search raised alike is printed once, by rank 1.
  local quiet = type(res) == "table" and res.shared and require("chai.mpi").rank() > 1
  if not quiet then stderr:write(msg, "\n") end
  return status
end

return M
