-- The CHAI-KTQ project's six configurations, rebuilt with chai.ktq and measured on GLUE SST-2 dev
-- against the unmodified f32 model, plus the per-layer sensitivity scores of every method.
--   chai script experiments/ktq_sst2.lua [options]
--     --model DIR     a trained classifier [chai.train.cached_model("sst2-opt-student")]
--     --configs LIST  comma-separated recipe names [baseline,chai_base,chai_quant,chai_target,
--                     chai_kd,chai_ktq]; a recipe whose step is not in this build is reported, not run
--     --seed S [1]    --repeats N [3]   --limit N (first N dev rows)   --steps N (target/kd steps)
--     --slices N      rows in each train slice (calibration, sensitivity, held-out) [chai.ktq's
--                     defaults: 256, 256, 500]
--     --set S.K=V     set option K of step S in every recipe that has step S (repeatable; V a
--                     number, true/false or a word), e.g. --set chai.min_layer=2
--     --threads N     chai.threads(N) [all cores]
--     --out FILE      JSON Lines: one object per configuration and one for the sensitivities
--     --no-sensitivity  skip the sensitivity table
-- Data: chai.data (CHAI_DATA_DIR, else the Hub). Prints markdown tables (docs/benchmarks.md).
local chai = require "chai"
local ktq = chai.ktq
local json = require("chai.core").json

local o = {model = nil, configs = ktq.recipe_names, seed = 1, repeats = 3, limit = nil, steps = nil,
           out = nil, sensitivity = true, slices = nil, set = {}}
local sets = {}
local given = require("chai.cli").options({...}, {
  prog = "ktq_sst2.lua",
  usage = "usage: chai script experiments/ktq_sst2.lua [--model DIR] [--configs LIST] [--seed S] "
          .. "[--repeats N] [--limit N] [--steps N] [--slices N] [--set STEP.KEY=VALUE]... "
          .. "[--threads N] [--out FILE] [--no-sensitivity]",
  options = {
    model = "string", seed = "count", repeats = "count", limit = "count", steps = "count",
    slices = "count", threads = "count", out = "string", no_sensitivity = "flag",
    configs = function(raw)
      local list = {}
      for name in raw:gmatch("[^,]+") do
        if not ktq.recipes[name] then
          return nil, "unknown configuration '" .. name .. "' (known: " .. table.concat(ktq.recipe_names, ", ") .. ")"
        end
        list[#list + 1] = name
      end
      return list
    end,
    set = function(raw) -- repeatable: each --set adds one
      local step, key, value = raw:match("^([%w_]+)%.([%w_]+)=(.+)$")
      if not step then return nil, "needs STEP.KEY=VALUE" end
      if value == "true" or value == "false" then value = value == "true" else value = tonumber(value) or value end
      sets[#sets + 1] = {step, key, value}
      return sets
    end,
  },
})
for k, v in pairs(given) do o[k] = v end
if o.no_sensitivity then o.sensitivity = false end
if o.threads then chai.threads(o.threads) end

local cli = require "chai.cli"
local dir = o.model or cli.guard("ktq_sst2.lua", chai.train.cached_model, "sst2-opt-student")
local ref = cli.guard("ktq_sst2.lua: --model '" .. dir .. "'", chai.opt.load, dir)
local task = cli.guard("ktq_sst2.lua", ktq.task, "sst2",
                       {max_length = math.min(128, ref.config.max_position_embeddings)})
io.stderr:write(("ktq_sst2: %s, %d dev rows, %d train rows, %d threads\n"):format(dir, #task.dev.rows,
                                                                                 #task.train.rows, chai.threads()))
local out = o.out and assert(io.open(o.out, "w"))
local function data_sizes()
  local d = {seed = o.seed}
  if o.slices then d.calibration, d.sensitivity, d.heldout = o.slices, o.slices, o.slices end
  return d
end
local function emit(obj)
  if out then out:write(json.encode(obj), "\n"); out:flush() end
end

-- Sensitivity of every method, on the sensitivity slice of the seed.
if o.sensitivity then
  local slices = task:slices(data_sizes())
  local rows = {}
  for _, method in ipairs({"chai-ktq", "entropy", "fisher", "perturb"}) do
    local r = ktq.sensitivity(ref, method == "chai-ktq" and nil or slices.sensitivity, {method = method, seed = o.seed})
    rows[#rows + 1] = r
    emit({kind = "sensitivity", method = method, scores = r.scores, details = r.details, seconds = r.seconds})
  end
  print("\n| method | " .. (function() local t = {} for l = 1, ref.config.num_hidden_layers do t[l] = "layer " .. l end return table.concat(t, " | ") end)() .. " | top 30% | tiers high / low | seconds |")
  print("|---|" .. string.rep("---|", ref.config.num_hidden_layers + 3))
  for _, r in ipairs(rows) do
    local cells = {}
    for l, s in ipairs(r.scores) do cells[l] = ("%.9g"):format(s) end
    local t = ktq.tiers(r.scores)
    print(("| %s | %s | %s | %s / %s | %.1f |"):format(r.method, table.concat(cells, " | "),
          table.concat(ktq.top(r.scores, 0.3), ","), table.concat(t.high, ","), table.concat(t.low, ","), r.seconds))
  end
end

local results = {}
for _, name in ipairs(o.configs) do
  local recipe = ktq.recipe(name, {seed = o.seed})
  if o.slices then recipe.data = {calibration = o.slices, sensitivity = o.slices, heldout = o.slices} end
  for _, kv in ipairs(o.set) do
    local has = false
    for _, st in ipairs(recipe.steps) do has = has or st == kv[1] end
    if has then
      recipe[kv[1]] = recipe[kv[1]] or {}
      recipe[kv[1]][kv[2]] = kv[3]
    end
  end
  if o.steps then
    if recipe.target then recipe.target.steps = o.steps end
    if recipe.kd then recipe.kd.steps = o.steps end
  end
  local m = ktq.clone(ref)
  local ok, model, records = pcall(ktq.apply, m, recipe, task, {progress = false})
  if not ok then
    io.stderr:write(("ktq_sst2: %s not run: %s\n"):format(name, tostring(model)))
    results[#results + 1] = {name = name, error = tostring(model)}
    emit({kind = "configuration", name = name, recipe = recipe, error = tostring(model)})
  else
    local build = 0
    for _, r in ipairs(records) do build = build + r.seconds end
    m = nil
    collectgarbage() -- the copies a recipe made (kd's teacher) go before measuring
    local metrics = ktq.measure(model, task, {reference = ref, repeats = o.repeats, limit = o.limit,
                                              seed = o.seed})
    io.stderr:write(("ktq_sst2: %s: accuracy %.2f%% (%+.2f vs f32) in %.0f s\n"):format(name,
                    100 * metrics.accuracy.value, 100 * metrics.paired.difference, build))
    results[#results + 1] = {name = name, metrics = metrics, build = build, records = records}
    emit({kind = "configuration", name = name, recipe = recipe, records = records, metrics = metrics,
          build_seconds = build})
  end
end

print("\n| configuration | steps | accuracy (95% CI) | vs f32 [paired 95% CI] | latency p50 / p90 / p99 ms | sentences/s at 16 / 64 | ×f32 at 16 | weight MB | KV B/token | peak RSS MB | build s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for _, r in ipairs(results) do
  local recipe = ktq.recipes[r.name]
  local steps = #recipe.steps > 0 and table.concat(recipe.steps, "→") or "—"
  if r.error then
    print(("| %s | %s | not run: %s |  |  |  |  |  |  |  |  |"):format(r.name, steps, (r.error:gsub("|", "/"))))
  else
    local x = r.metrics
    local t16, t64 = x.throughput[1], x.throughput[2]
    print(("| %s | %s | %.2f%% (%.1f–%.1f) | %+.2f [%+.2f, %+.2f] | %.2f / %.2f / %.2f | %.0f / %.0f | %.2f | %.1f | %d | %.0f | %.0f |"):format(
      r.name, steps, 100 * x.accuracy.value, 100 * x.accuracy.low, 100 * x.accuracy.high,
      100 * x.paired.difference, 100 * x.paired.low, 100 * x.paired.high,
      x.latency_ms.p50, x.latency_ms.p90, x.latency_ms.p99, t16.sentences_per_s, t64.sentences_per_s,
      x.ratios.throughput[1].ratio, x.weight_bytes.total / 1e6, x.kv_bytes_per_token,
      (x.peak_rss_bytes or 0) / 1e6, r.build))
  end
end
if out then out:close() end
