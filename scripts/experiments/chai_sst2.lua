-- CHAI on a chai-trained SST-2 classifier: GLUE SST-2 dev accuracy unchanged and under CHAI
-- (static plans at several k, the elbow plan from calibration, online membership, structural
-- pruning), beside the K-cache and total KV saving of each configuration.
--   chai script experiments/chai_sst2.lua [--model DIR] [--calib N] [--tokens N] [--seed S]
--     --model   a trained classifier [chai.train.cached_model("sst2-opt-student"), made by
--               experiments/train_sst2.lua]
--     --calib   calibration sentences from the SST-2 train split [200]; --tokens per text [32]
--     --limit   evaluate only the first N dev rows (a smoke run)
-- Data (chai.data): $CHAI_DATA_DIR (sst2/, opt-tokenizer/), else the Hub (the rows API,
-- facebook/opt-125m's tokenizer; cached). Prints a markdown table (docs/benchmarks.md).
local chai = require "chai"
local cli = require "chai.cli"

local PROG = "chai_sst2.lua"
local o = cli.options({...}, {
  prog = PROG,
  usage = "usage: chai script experiments/chai_sst2.lua [--model DIR] [--calib N] [--tokens N] " ..
          "[--seed S] [--limit N]",
  options = {model = "string", calib = "count", tokens = "count", seed = "integer", limit = "count"},
})
o.calib, o.tokens, o.seed = o.calib or 200, o.tokens or 32, o.seed or 0
local dir = o.model or cli.guard(PROG, chai.train.cached_model, "sst2-opt-student")
local m = cli.guard(PROG .. ": --model '" .. dir .. "'", chai.opt.load, dir)
local tok = cli.guard(PROG, chai.data.tokenizer)
local L, H, D = m.config.num_hidden_layers, m.config.num_attention_heads,
                m.config.hidden_size // m.config.num_attention_heads
local dev = chai.train.encode(cli.guard(PROG, chai.data.task, "sst2", "validation").rows, tok, {max_length = 64})
if o.limit then -- a smoke run on the first rows (tests)
  local sub = {}
  for k = 1, math.min(o.limit, #dev) do sub[k] = dev[k] end
  dev = sub
end
local train = cli.guard(PROG, chai.data.task, "sst2", "train").rows
local texts = {}
for k = 1, math.min(o.calib, #train) do texts[k] = train[k].sentence end

local function evaluate(model, bs) return chai.train.evaluate(model, dev, {batch_size = bs or 64}).accuracy end
local function saving(plan)
  local kept = 0
  for _, e in ipairs(plan and plan.layers or {}) do kept = kept + (H - (e.k or #e.clusters)) end
  return kept / (L * H)
end

local rows = {}
-- `model` (default m, with the plan set) gives the KV bytes per token actually kept: K of the
-- representatives (static, online) or K and V of the kept heads (prune).
local function add(name, plan, acc, note, model)
  rows[#rows + 1] = {name = name, k = plan and saving(plan) or 0, acc = acc, note = note or "",
                     kv = (model or m):memory().kv_cache_bytes_per_token}
  io.stderr:write(string.format("%-40s acc %.4f\n", name, acc))
end

local dense = evaluate(m)
add("dense", nil, dense)

local stats = chai.heads.calibrate(m, tok, texts, {tokens = o.tokens})
local elbow_plan = chai.heads.plan(stats, {seed = o.seed})
local elbows = {}
for _, info in ipairs(elbow_plan.meta.layers or {}) do elbows[#elbows + 1] = info.k .. "(" .. info.rule .. ")" end

local function uniform(k, first)
  return chai.heads.plan(stats, {seed = o.seed, min_layer = first,
                                 override = (function() local t = {} for l = 1, L do t[l] = k end return t end)()})
end

m:set_heads(elbow_plan)
add("static, elbow plan (k per layer: " .. table.concat(elbows, ", ") .. ")", elbow_plan, evaluate(m))
local late_elbow = chai.heads.plan(stats, {seed = o.seed, min_layer = L // 2 + 1})
m:set_heads(late_elbow)
add(string.format("static, elbow plan on layers %d-%d", L // 2 + 1, L), late_elbow, evaluate(m))
for k = H - 1, 1, -1 do
  for _, first in ipairs({1, 2, L // 2 + 1}) do
    if first == 1 or first < L then
      local p = uniform(k, first)
      m:set_heads(p)
      local what = first == 1 and "every layer" or string.format("layers %d-%d", first, L)
      add(string.format("static, %s k=%d", what, k), p, evaluate(m))
    end
  end
end
-- Mixed: the first layer lightly clustered, the later ones more (the paper's shape).
if H >= 3 then
  local over = {[1] = H - 1}
  for l = 2, L do over[l] = H // 2 end
  local mixed = chai.heads.plan(stats, {seed = o.seed, override = over})
  m:set_heads(mixed)
  add(string.format("static, layer 1 k=%d, layers 2-%d k=%d", H - 1, L, H // 2), mixed, evaluate(m))
  m:set_heads(mixed, {mode = "online"})
  add(string.format("online, layer 1 k=%d, layers 2-%d k=%d", H - 1, L, H // 2), mixed, evaluate(m, 1),
      "prompts < 6 tokens dense")
  local small = chai.heads.prune(m, mixed, {keep = 1})
  add(string.format("prune, layer 1 k=%d, layers 2-%d k=%d, keep 1", H - 1, L, H // 2), mixed,
      evaluate(small), string.format("%d → %d parameters", m:num_parameters(), small:num_parameters()),
      small)
  small:free()
  m:set_heads(nil)
end
-- Online membership where static membership loses least: the later half of the layers.
for _, k in ipairs({H // 2, 1}) do
  local p = uniform(k, L // 2 + 1)
  m:set_heads(p, {mode = "online"})
  add(string.format("online, layers %d-%d k=%d", L // 2 + 1, L, k), p, evaluate(m, 1),
      "prompts < 6 tokens dense")
end
for k = H - 1, math.max(1, H - 2), -1 do
  local p = uniform(k, 1)
  m:set_heads(p, {mode = "online"})
  local acc = evaluate(m, 1)
  add(string.format("online, every layer k=%d", k), p, acc,
      "prompts < 6 tokens dense")
end
m:set_heads(nil)
local prunes = {}
for k = H - 1, math.max(1, H - 2), -1 do prunes[#prunes + 1] = {k, 1} end
for k = H // 2, 1, -1 do prunes[#prunes + 1] = {k, 2} end -- the first layer left whole
for _, kf in ipairs(prunes) do
  local k, first = kf[1], kf[2]
  local p = uniform(k, first)
  local small = chai.heads.prune(m, p, {keep = 1})
  local what = first == 1 and "every layer" or string.format("layers %d-%d", first, L)
  add(string.format("prune, %s k=%d, keep 1", what, k), p, evaluate(small),
      string.format("%d → %d parameters", m:num_parameters(), small:num_parameters()), small)
  small:free()
end

print(string.format("model %s (%d layers × %d heads), SST-2 dev %d rows, calibration %d texts × %d tokens",
                    dir, L, H, #dev, #texts, o.tokens))
print("")
print("| configuration | heads merged | KV bytes/token | K+V saved | dev accuracy | change (points) | note |")
print("|---|---|---|---|---|---|---|")
for _, r in ipairs(rows) do
  print(string.format("| %s | %.1f%% | %d | %.1f%% | %.2f | %+.2f | %s |", r.name, 100 * r.k, r.kv,
                      100 * (1 - r.kv / rows[1].kv), 100 * r.acc, 100 * (r.acc - dense), r.note))
end
