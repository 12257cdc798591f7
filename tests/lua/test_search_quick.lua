-- experiments/search.lua --quick end to end on a tiny random classifier (the OPT tokenizer's
-- vocabulary) with the test data: every file of the output folder, the step records the report
-- draws from, best/ opened with chai.opt.load, the report rendered in headless Chromium (skipped
-- without it), --resume with nothing left, --resume of another task refused, and a task without
-- the train split the steps need.
local chai = require "chai"
local T = require "helper"
local json = require("chai.core").json
local report = require "chai.report"
local chai_bin = assert(os.getenv("CHAI_BUILD_DIR"), "CHAI_BUILD_DIR unset") .. "/chai"
local data = os.getenv("CHAI_DATA_DIR")
local f = data and io.open(data .. "/sst2/glue_train.tsv", "rb")
if not f then
  print("skipped: CHAI_DATA_DIR has no sst2/glue_train.tsv")
  return T.finish()
end
f:close()
local tmp = T.tmpdir()
local m = chai.opt.create({vocab_size = 50272, hidden_size = 32, num_hidden_layers = 2,
                           num_attention_heads = 4, ffn_dim = 64, max_position_embeddings = 80,
                           num_labels = 2, init_std = 0.2}, {seed = 3})
m:save(tmp .. "/model")
m:free()

local function run(args)
  local p = io.popen(("cd '%s' && CHAI_DATA_DIR='%s' '%s' script experiments/search.lua %s 2>&1; echo \"exit=$?\""):format(
    tmp, data, chai_bin, args))
  local text = p:read("a")
  p:close()
  return text, tonumber(text:match("exit=(%d+)%s*$"))
end

local out = tmp .. "/search"
local text, code = run(("--model '%s/model' --quick --seed 2 --out '%s' --format md "
                        .. "--configs chai_base,chai_kd,chai_target_kd,chai_quant --criterion accuracy"):format(tmp, out))
T.eq(code, 0, "the quick search runs: " .. text)
T.check(text:find("chai_kd: kd", 1, true) and text:find("chai_kd: measure", 1, true), "a line per step and stage")
T.check(text:find("## Best configuration per criterion", 1, true) and text:find("Chosen (accuracy): ", 1, true),
        "the tables are printed")
local results = {}
for line in io.lines(out .. "/results.jsonl") do
  local r = json.decode(line)
  results[r.name] = r
end
for _, name in ipairs({"baseline", "chai_base", "chai_kd", "chai_target_kd"}) do
  local r = results[name]
  T.check(r and r.status == "ok", name .. " finished: " .. tostring(r and r.error))
  if r and r.metrics then
    T.check(r.metrics.accuracy.n == 40 and r.metrics.paired and r.metrics.latency_ms.p99 and
            #r.metrics.throughput == 2 and r.metrics.weight_bytes.total > 0 and r.metrics.kv_bytes_per_token > 0,
            name .. ": every metric")
    T.check(r.seed == 2 and r.machine.blas_core and r.machine.chai_version, name .. ": seed and machine")
  end
end
local base = results.baseline
T.check(base and base.metrics.paired.difference == 0, "the baseline against the unmodified model: no difference")
local chai_rec = results.chai_base and results.chai_base.records[1]
T.check(chai_rec and chai_rec.step == "chai" and #chai_rec.curves == 2, "chai_base: the elbow curves of both layers")
local tk = results.chai_target_kd
T.check(tk and tk.records[2].step == "target" and tk.records[3].step == "kd"
        and #tk.records[3].training.curve.loss > 0, "chai_target_kd: target then kd, with the training curve")
local q = results.chai_quant
T.check(q ~= nil, "chai_quant has a line")
if q and q.status ~= "ok" then
  T.check(q.error:find("not available in this build", 1, true), "chai_quant: why it did not run: " .. tostring(q.error))
end
local meta = json.decode(T.read_bytes(out .. "/meta.json"))
T.check(meta.model == tmp .. "/model" and meta.quick == true and meta.seed == 2 and meta.criterion == "accuracy",
        "meta.json")
local sens = json.decode(T.read_bytes(out .. "/sensitivity.json"))
T.check(#sens.methods == 4, "sensitivity: every method")
local chosen = json.decode(T.read_bytes(out .. "/best/search.json"))
T.check(results[chosen.name] ~= nil, "best/ names a measured configuration")
local best = chai.opt.load(out .. "/best")
T.eq(best:heads().mode, chosen.name == "baseline" and "dense" or "static", "best/ is clustered as it was measured")
T.check(T.read_bytes(out .. "/report.md"):find("## CHAI: clusters per layer", 1, true), "report.md")

-- The report in a browser.
if report.chromium() and report.chartjs() then
  local check, why = report.render(out .. "/report.html", {screenshot = out .. "/report.png"})
  T.check(check ~= nil, "the page checked itself: " .. tostring(why))
  if check then
    T.eq(check.errors, {}, "no console errors")
    T.check(check.canvases >= 10 and check.drawn == check.canvases, ("every canvas drawn: %d of %d"):format(check.drawn, check.canvases))
  end
  T.check(io.open(out .. "/report.png", "rb") ~= nil, "a screenshot")
else
  print("SKIP (browser part): no Chromium or Chart.js here; scripts/setup.sh installs chromium and libjs-chart.js")
end

-- --resume: nothing left to run; another task refused.
local n_before = #T.read_bytes(out .. "/results.jsonl")
text, code = run(("--resume '%s'"):format(out))
T.eq(code, 0, "resume with nothing left: " .. text)
T.check(text:find("5 of 5 configurations already finished", 1, true) or text:find("4 of 5 configurations already finished", 1, true),
        "says what finished")
if q and q.status == "ok" then T.eq(#T.read_bytes(out .. "/results.jsonl"), n_before, "nothing appended") end
text, code = run(("--resume '%s' --task rte"):format(out))
T.eq(code, 1, "resume of another task")
T.check(text:find("holds a search of task sst2; this run asks for rte", 1, true), text)

-- A task without the split the steps need (PIQA ships its validation split only).
text, code = run(("--model '%s/model' --task piqa --quick --out '%s/piqa'"):format(tmp, tmp))
T.eq(code, 2, "piqa with steps that train: refused")
T.check(text:find("--task piqa has no train split here", 1, true) and text:find("--configs baseline", 1, true), text)
T.finish()
