-- chai.search with a fake backend (tests/lua/search_fake.lua: tiny models, made-up metrics): the
-- options and their errors, the default space and the orders, grids, the output folder (meta,
-- results, progress, log, best/, report), --resume, failures, SIGTERM and the budget, a full disk.
local chai = require "chai"
local core = require "chai.core"
local json = core.json
local T = require "helper"
local fake = require "search_fake"
local search = require "chai.search"
local space = require "chai.search_space"
local pick = require "chai.search_pick"

-- Runs the command with a fake backend; returns status, stdout text, stderr text.
local function main(args, backend, env)
  local out, err = fake.buffer(), fake.buffer()
  env = env or {}
  env.backend = backend or fake.backend()
  env.stdout, env.stderr, env.tty = out, err, env.tty or false
  local status = search.main(args, env)
  return status, out:text(), err:text()
end

local function read_lines(path)
  local out = {}
  local f = io.open(path, "rb")
  if not f then return out end
  for line in f:read("a"):gmatch("[^\n]+") do out[#out + 1] = line end
  f:close()
  return out
end

local function results(dir)
  local out = {}
  for _, line in ipairs(read_lines(dir .. "/results.jsonl")) do out[#out + 1] = json.decode(line) end
  return out
end

local function names(list)
  local out = {}
  for i, x in ipairs(list) do out[i] = type(x) == "table" and x.name or space.name(x) end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- Options: each mistake is status 2 with one line naming it

for _, case in ipairs({
  {{"--frobnicate"}, "unknown option '--frobnicate'"},
  {{"-x"}, "unknown option '-x'"},
  {{"stray"}, "unexpected argument 'stray'"},
  {{"--task", "mnli"}, "--task 'mnli': not a task"},
  {{"--criterion", "speed"}, "--criterion 'speed': not a criterion"},
  {{"--configs", "chai_quantum"}, "unknown step 'quantum'"},
  {{"--configs", "chai_kd_kd"}, "step 'kd' twice"},
  {{"--configs", "bert"}, "unknown configuration 'bert'"},
  {{"--orders", "kd-quant-foo"}, "--orders 'kd-quant-foo': order 'kd-quant-foo': unknown step 'foo'"},
  {{"--grid", "quant.low"}, "--grid knob 'quant.low': expected STEP.OPTION=VALUE"},
  {{"--grid", "alpha=1"}, "must start with a step"},
  {{"--configs", "chai_quant", "--grid", "kd.alpha=0.3"}, "--grid knob 'kd.alpha' applies to no configuration"},
  {{"--grid", "kd.alpha=1", "kd.alpha=2"}, "--grid names kd.alpha twice"},
  {{"--budget", "-3"}, "--budget '-3': needs a positive number of minutes"},
  {{"--budget", "soon"}, "--budget 'soon'"},
  {{"--seed", "1.5"}, "--seed '1.5': needs a non-negative integer"},
  {{"--format", "pdf"}, "--format 'pdf'"},
  {{"--model"}, "--model needs a value"},
  {{"--quick=yes"}, "--quick takes no value"},
  {{"--task", "sst2", "--task", "rte"}, "--task given twice"},
  {{"--out", "a", "--resume", "b"}, "--out and --resume"},
}) do
  local status, _, err = main(case[1])
  T.eq(status, 2, "status 2 for " .. table.concat(case[1], " "))
  T.check(err:find(case[2], 1, true) ~= nil, ("message for %s names it: %s"):format(table.concat(case[1], " "), err))
  T.check(select(2, err:gsub("\n", "")) == 1, "one line: " .. err)
end
local status, out = main({"--help"})
T.eq(status, 0, "--help")
T.check(out:find("--criterion", 1, true) and out:find("docs/search.md", 1, true), "--help prints the usage")
local o = search.parse({"--grid", "quant.low=0.2,0.4", "kd.alpha=0.3,0.7", "--quick", "--budget=1.5", "--seed", "3"})
T.eq(#o.grid, 2, "--grid takes the words after it")
T.eq(o.grid[1].values, {0.2, 0.4}, "knob values are numbers")
T.eq({o.quick, o.budget, o.seed}, {true, 1.5, 3}, "flags, --name=value")

-- ---------------------------------------------------------------------------------------------
-- The space

local default = space.orders({})
T.eq(names(default), {"baseline", "chai_base", "chai_quant", "chai_target", "chai_kd", "chai_quant_target",
                      "chai_target_quant", "chai_kd_quant", "chai_quant_kd", "chai_kd_target", "chai_target_kd",
                      "chai_ktq", "chai_target_quant_kd"},
     "default: baseline, chai_base, every subset in the CHAI-KTQ order and its reverse")
T.eq(#space.orders({orders = "all"}), 2 + 3 + 6 + 6, "all: every order of every subset")
T.eq(#space.orders({orders = "paper"}), 2 + 7, "paper: one order per subset")
T.eq(names(space.orders({configs = {"chai_quant", "chai_ktq"}})), {"baseline", "chai_quant", "chai_ktq"},
     "--configs: the named ones and the baseline")
T.eq(#space.orders({configs = {"chai_ktq"}, orders = "all"}), 1 + 6, "--configs chai_ktq --orders all")
T.eq(names(space.orders({configs = {"chai_quant_target"}, orders = "paper"})), {"baseline", "chai_quant_target"},
     "paper order of a set")
T.eq(names(space.orders({orders = {{"quant", "kd"}, {"target"}}})), {"baseline", "chai_base", "chai_quant_kd", "chai_target"},
     "an order list")
T.eq(space.parse_name("chai_ktq"), {"kd", "quant", "target"}, "chai_ktq is kd → quant → target")
local cfgs = space.configs({configs = {"chai_quant", "chai_kd"}, seed = 5,
                            grid = {space.parse_knob("quant.low=0.2,0.4"), space.parse_knob("kd.alpha=0.3")}},
                           {quant = {low = 0.3, high = 0.3}, kd = {alpha = 0.5, T = 2}, chai = {mode = "static"}})
T.eq(names(cfgs), {"baseline", "chai_quant[quant.low=0.2]", "chai_quant[quant.low=0.4]", "chai_kd[kd.alpha=0.3]"},
     "grid variants named by their knobs")
T.eq(cfgs[3].recipe.quant, {low = 0.4, high = 0.3}, "a knob replaces one default")
T.eq(cfgs[3].recipe.steps, {"chai", "quant"}, "steps: chai first")
T.eq({cfgs[3].recipe.seed, cfgs[1].recipe.steps}, {5, {}}, "seed; the baseline runs no step")
local nested = space.configs({configs = {"chai_quant"}, grid = {space.parse_knob("quant.formats.low=int4,int8")}},
                             {quant = {formats = {high = "f32", low = "int4"}}})
T.eq(nested[3].recipe.quant.formats, {high = "f32", low = "int8"}, "nested knob")

-- ---------------------------------------------------------------------------------------------
-- Choosing

local function res(name, acc, thr, bytes, diff)
  return {name = name, status = "ok", metrics = {accuracy = {value = acc}, paired = {difference = diff or 0},
          throughput = {{batch_size = 16, sentences_per_s = thr}}, weight_bytes = {total = bytes},
          latency_ms = {p50 = 1000 / thr}, kv_bytes_per_token = 100}}
end
local rs = {res("baseline", 0.80, 100, 4e6, 0), res("a", 0.799, 250, 1e6, -0.001), res("b", 0.79, 300, 1e6, -0.01),
            res("c", 0.78, 90, 4e6, -0.02), res("d", 0.81, 110, 4e6, 0.01), {name = "e", status = "failed", error = "x"}}
T.eq(names(pick.front(rs)), {"a", "b", "d"}, "front: c is beaten by the baseline, which d beats")
T.eq(pick.best(rs, "accuracy").name, "d", "accuracy")
T.eq(pick.best(rs, "throughput").name, "b", "throughput")
T.eq(pick.best(rs, "latency").name, "b", "latency")
T.eq(pick.best(rs, "memory").name, "a", "memory: the tie on bytes goes to accuracy")
T.eq(pick.best(rs, "pareto").name, "a", "pareto: the fastest front member within 0.5 points")
-- A criterion of one's own: the fewest KV bytes per token, then accuracy.
pick.add_criterion("kv", {order = {{"kv", "min"}, {"accuracy", "max"}}, why = "the fewest KV bytes per token"})
local kvrs = {res("x", 0.8, 100, 1, 0), res("y", 0.7, 100, 1, 0)}
kvrs[2].metrics.kv_bytes_per_token = 50
T.eq(pick.best(kvrs, "kv").name, "y", "an added criterion chooses")
T.eq(search.parse({"--criterion", "kv"}).criterion, "kv", "--criterion accepts it")
T.raises(function() pick.add_criterion("bad", {order = {{"kv", "up"}}}) end, "must be {field", "a bad order")
pick.by_name.kv = nil
table.remove(pick.criteria)
T.check(pick.table(rs, rs[1]):find("| e | — | failed: x |", 1, true) == nil and pick.table(rs, rs[1]):find("failed: x", 1, true),
        "failed rows say why")

-- ---------------------------------------------------------------------------------------------
-- A whole search

local dir = T.tmpdir() .. "/run"
local backend = fake.backend()
status, out = main({"--out", dir, "--format", "md", "--seed", "7"}, backend)
T.eq(status, 0, "the default search runs")
local r = results(dir)
T.eq(#r, 13, "one line per configuration")
T.eq(backend.calls, names(default), "every configuration ran once, in order")
local first = r[1]
T.check(first.name == "baseline" and first.status == "ok" and first.seed == 7, "baseline line")
T.check(type(first.machine) == "table" and first.machine.blas_core and first.machine.threads and first.machine.chai_version,
        "machine: BLAS core, threads, chai version")
T.check(type(r[13].recipe) == "table" and r[13].recipe.steps[1] == "chai", "recipe recorded")
T.eq(r[13].order, {"target", "quant", "kd"}, "order recorded")
T.check(r[2].records[1].step == "chai" and r[2].metrics.accuracy.value > 0, "records and metrics")
local meta = json.decode(T.read_bytes(dir .. "/meta.json"))
T.check(meta.model == "fake/model" and meta.task == "sst2" and meta.criterion == "pareto" and meta.seed == 7
        and #meta.configs == 13 and meta.quick == false and type(meta.started) == "number" and meta.machine,
        "meta.json")
local events = {}
for _, line in ipairs(read_lines(dir .. "/progress.jsonl")) do events[#events + 1] = json.decode(line) end
T.eq(events[1].event, "start", "progress starts with start")
T.eq(events[#events].event, "done", "and ends with done")
local done_events = 0
for _, e in ipairs(events) do
  if e.event == "config_done" then done_events = done_events + 1 end
  T.check(type(e.t) == "number" and e.total, "every event has t and total")
end
T.eq(done_events, 13, "a config_done per configuration")
T.check(#read_lines(dir .. "/search.log") > 20, "search.log")
local chosen = json.decode(T.read_bytes(dir .. "/best/search.json"))
local want = pick.best(r, "pareto")
T.eq(chosen.name, want.name, "best/ holds the chosen configuration")
local m = chai.opt.load(dir .. "/best")
T.eq(m:heads().mode, "static", "best/ opens with chai.opt.load, clustered as measured")
T.check(out:find("## Best configuration per criterion", 1, true) and out:find("Chosen (pareto): " .. want.name, 1, true),
        "the tables are printed")
T.check(out:find("| ★ ", 1, true) ~= nil, "the front is marked")
local html = T.read_bytes(dir .. "/report.html")
T.check(html:find("<canvas", 1, true) == nil and html:find('id="radars"', 1, true), "canvases are made by the page's script")
T.check(not html:find("<script src", 1, true) and not html:find("https?://cdn"), "no external script")
local chartjs = chai.report.chartjs()
if chartjs then T.check(html:find("Chart.js v", 1, true) ~= nil, "Chart.js inlined") end
T.check(html:find("report-data", 1, true) and html:find("chai_target_quant_kd", 1, true), "data embedded")
local md = T.read_bytes(dir .. "/report.md")
T.check(md:find("## Pareto front", 1, true) and md:find("| fisher | 0.25 | 0.75 |", 1, true)
        and md:find("not measured: not in this build", 1, true) and md:find("| 2 | 2 | 2 | kneedle |", 1, true),
        "report.md: tables, sensitivity, CHAI k per layer")
T.check(md:find("| configuration | f32 MB | total MB |", 1, true) and md:find("| chai_quant | 1.12 | 1.12 |", 1, true),
        "report.md: weights by format")

-- A folder that holds a search is never reused by --out.
status, _, err = main({"--out", dir})
T.eq(status, 1, "--out of an existing search")
T.check(err:find("already holds a search", 1, true) and err:find("--resume", 1, true), err)

-- ---------------------------------------------------------------------------------------------
-- Resume: a search of two configurations continued with more

local rdir = T.tmpdir() .. "/resume"
status = main({"--out", rdir, "--configs", "chai_quant", "--criterion", "accuracy"})
T.eq(status, 0, "a small search")
local b2 = fake.backend()
status = main({"--resume", rdir, "--configs", "chai_quant,chai_kd,chai_ktq"}, b2)
T.eq(status, 0, "resumed with more configurations")
T.eq(b2.calls, {"chai_kd", "chai_ktq"}, "finished configurations are not run again")
T.eq(#results(rdir), 4, "results only grow")
meta = json.decode(T.read_bytes(rdir .. "/meta.json"))
T.check(#meta.resumed == 1 and #meta.configs == 4 and meta.criterion == "accuracy", "meta records the resumed run")
T.eq(b2.options.criterion, "accuracy", "the criterion comes from the folder")
local b3 = fake.backend()
status = main({"--resume", rdir}, b3)
T.eq(b3.calls, {}, "nothing left to run")
for _, case in ipairs({
  {{"--resume", rdir, "--task", "rte"}, "holds a search of task sst2; this run asks for rte"},
  {{"--resume", rdir, "--model", "facebook/opt-125m"}, "holds a search of model default"},
  {{"--resume", rdir, "--seed", "9"}, "seed 1"},
  {{"--resume", rdir .. "/nope"}, "no such folder"},
  {{"--resume", T.tmpdir()}, "no meta.json there"},
}) do
  local st, _, e = main(case[1])
  T.eq(st, 1, "refused: " .. table.concat(case[1], " "))
  T.check(e:find(case[2], 1, true) ~= nil, "says why: " .. e)
end

-- A new search beside an earlier one takes its finished configurations (same model, task, seed,
-- code, machine and recipe) instead of running them again.
local parent = T.tmpdir()
main({"--out", parent .. "/a", "--configs", "chai_quant"})
local b8 = fake.backend()
status, out = main({"--out", parent .. "/b", "--configs", "chai_quant,chai_kd"}, b8)
T.eq(status, 0, "second search")
T.eq(b8.calls, {"chai_kd"}, "only the new configuration runs")
r = results(parent .. "/b")
T.check(#r == 3 and r[1].reused_from == parent .. "/a" and r[2].reused_from == parent .. "/a" and r[3].reused_from == nil,
        "the taken lines say where from")
T.check(T.read_bytes(parent .. "/b/sensitivity.json") ~= nil, "the sensitivity is taken too")
T.eq(json.decode(T.read_bytes(parent .. "/b/best/search.json")).name, pick.best(r, "pareto").name, "best/ holds the choice")
local b9 = fake.backend()
main({"--out", parent .. "/c", "--configs", "chai_quant", "--seed", "4"}, b9)
T.eq(b9.calls, {"baseline", "chai_quant"}, "another seed measures again")
local b10 = fake.backend()
main({"--out", parent .. "/d", "--configs", "chai_quant", "--grid", "quant.low=0.1"}, b10)
T.eq(b10.calls, {"chai_quant[quant.low=0.1]"}, "another recipe measures again (the baseline is taken)")

-- ---------------------------------------------------------------------------------------------
-- Failures, unavailable steps, bad knobs

local fdir = T.tmpdir() .. "/fail"
status, out = main({"--out", fdir, "--configs", "chai_kd,chai_quant"}, fake.backend({fail_on = "chai_kd", unavailable = "quant"}))
T.eq(status, 0, "a failing configuration does not stop the search")
r = results(fdir)
T.check(r[2].name == "chai_kd" and r[2].status == "failed" and r[2].error == "boom in chai_kd", "failed line with the error")
T.check(r[3].status == "failed" and r[3].error:find("not available in this build", 1, true), "unavailable step: failed line")
T.check(out:find("failed: boom in chai_kd", 1, true) ~= nil, "the table says why")
local b4 = fake.backend()
main({"--resume", fdir}, b4)
T.eq(b4.calls, {"chai_kd", "chai_quant"}, "failed configurations are retried on resume")
status, _, err = main({"--out", T.tmpdir() .. "/knob", "--configs", "chai_kd", "--grid", "kd.alpha=0.5,3"})
T.eq(status, 2, "a bad knob value is a bad option")
T.check(err:find("chai_kd[kd.alpha=3]", 1, true) and err:find("kd.alpha must be in [0, 1], got 3", 1, true), err)
status, _, err = main({"--out", T.tmpdir() .. "/setup"}, fake.backend({setup_error = "no model folder /x"}))
T.check(status == 1 and err:find("no model folder /x", 1, true), "setup errors: status 1, one line: " .. err)

-- ---------------------------------------------------------------------------------------------
-- SIGTERM while a configuration runs: it is abandoned, the rest is kept, status 0

local sdir = T.tmpdir() .. "/signal"
status, _, err = main({"--out", sdir, "--configs", "chai_quant,chai_kd,chai_target"}, fake.backend({signal_on = "chai_kd"}),
                      {signals = true})
T.eq(status, 0, "stopped cleanly")
T.eq(names(results(sdir)), {"baseline", "chai_quant"}, "what finished is kept, the interrupted one is not written")
events = {}
for _, line in ipairs(read_lines(sdir .. "/progress.jsonl")) do events[#events + 1] = json.decode(line) end
T.eq(events[#events].event, "stopped", "the last event is stopped")
T.check(err:find("stopped by SIGTERM: 2 of 4 configurations finished; continue with --resume", 1, true), err)
T.check(T.read_bytes(sdir .. "/report.html"):find("chai_quant", 1, true), "the report covers what finished")
local b5 = fake.backend()
main({"--resume", sdir}, b5)
T.eq(b5.calls, {"chai_kd", "chai_target"}, "resume runs the rest")

-- Ctrl-C while the model is being made (trained): a clean stop with nothing measured.
local idir = T.tmpdir() .. "/setup-int"
status, _, err = main({"--out", idir}, fake.backend({signal_in_setup = true}), {signals = true})
T.eq(status, 0, "stopped while setting up: status 0")
T.check(err:find("stopped by SIGINT while setting up", 1, true), err)
events = {}
for _, line in ipairs(read_lines(idir .. "/progress.jsonl")) do events[#events + 1] = json.decode(line) end
T.eq(events[#events].event, "stopped", "the last event is stopped")

-- The budget: configurations predicted not to fit are skipped (the kd step claims 1000 s).
local bdir = T.tmpdir() .. "/budget"
local b6 = fake.backend({step_seconds = {kd = 1000}})
status, out = main({"--out", bdir, "--configs", "chai_kd,chai_quant,chai_kd_quant", "--budget", "10"}, b6, {signals = true})
T.eq(status, 0, "budget run")
T.eq(b6.calls, {"baseline", "chai_kd", "chai_quant"}, "chai_kd_quant predicted at 1000+ s is skipped")

-- ---------------------------------------------------------------------------------------------
-- A full disk while a result is written: the partial line is cut back, earlier lines are kept

local ddir = T.tmpdir() .. "/disk"
status, _, err = main({"--out", ddir, "--configs", "chai_quant,chai_kd,chai_target"},
                      fake.backend({full_disk_on = "chai_kd", full_disk_bytes = 60}))
core.testing.fail_writes_after(-1)
T.eq(status, 1, "a full disk ends the run with status 1")
T.check(err:find("No space left on device", 1, true) and err:find("The 2 configurations finished before are kept", 1, true)
        and err:find("--resume", 1, true), "the message says what happened and what is kept: " .. err)
local raw = T.read_bytes(ddir .. "/results.jsonl")
T.eq(raw:sub(-1), "\n", "results.jsonl ends with a whole line")
T.eq(names(results(ddir)), {"baseline", "chai_quant"}, "no partial line, nothing lost")
local b7 = fake.backend()
status = main({"--resume", ddir}, b7)
T.eq(status, 0, "resumed after the disk was freed")
T.eq(b7.calls, {"chai_kd", "chai_target"}, "the lost configuration runs again")
T.eq(#results(ddir), 4, "all four kept")

-- ---------------------------------------------------------------------------------------------
-- Progress: a bar with the count and the ETA on a terminal, plain lines otherwise

local tdir = T.tmpdir() .. "/tty"
local tout, terr = fake.buffer(), fake.buffer()
search.main({"--out", tdir, "--configs", "chai_quant,chai_kd"}, {backend = fake.backend(), stdout = tout, stderr = terr, tty = true})
local tty_text = terr:text()
T.check(tty_text:find("\r\27[K[", 1, true) ~= nil, "the bar is redrawn in place")
T.check(tty_text:find("] 3/3 configurations  ETA 0:00", 1, true) ~= nil, "the bar shows the count and the ETA")
T.check(tty_text:find("search: chai_kd: measure  (2/3 done, ETA ", 1, true) ~= nil, "a line per stage")
local plain = fake.buffer()
search.main({"--out", T.tmpdir() .. "/plain", "--configs", "chai_quant"}, {backend = fake.backend(), stdout = fake.buffer(), stderr = plain, tty = false})
T.check(not plain:text():find("\r", 1, true) and plain:text():find("search: chai_quant: build", 1, true), "plain lines off a terminal")
local log = T.read_bytes(tdir .. "/search.log")
T.check(log:find("chai_kd: measure", 1, true) and log:find("## Best configuration per criterion", 1, true),
        "search.log has the stages and the tables")

T.finish()
