-- chai.ktq on tiny models and synthetic rows (a toy SST-2: label 1 when token 7 or 8 occurs):
-- tiers/top, slices and data discipline, the four sensitivity methods against direct
-- computations, every step changing exactly what it says (plans after chai, frozen weights
-- bit-identical after target, kd's trainable set and teacher, the head step), order, seeds,
-- bad recipes named, PIQA's refusals, and measure's statistics.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"
local ktq = chai.ktq
local core = require "chai.core"
local json = core.json
chai.threads(1) -- tiny models: one thread avoids OpenMP spinning against a busy machine

local config = {vocab_size = 64, hidden_size = 32, num_hidden_layers = 4, num_attention_heads = 4,
                ffn_dim = 64, max_position_embeddings = 64, num_labels = 2}
local function model(seed) return chai.opt.create(config, {seed = seed or 1}) end

local function toy(n, seed)
  local rng, rows = chai.data.rng(seed), {}
  for i = 1, n do
    local ids, lab = {2}, 0
    for j = 2, 4 + rng(10) do
      ids[j] = 3 + rng(60)
      if ids[j] == 7 or ids[j] == 8 then lab = 1 end
    end
    rows[i] = {ids = ids, label = lab}
  end
  return rows
end
local function sst2() return ktq.task("sst2", {train = toy(700, 1), validation = toy(120, 2)}) end

local function snapshot(m)
  local out = {}
  for name, p in pairs(m:params()) do out[name] = p:clone() end
  return out
end
local function same(a, b) return a:numel() == b:numel() and chai.allclose(a, b, {atol = 0, rtol = 0}) end
local function changed_names(m, snap)
  local out = {}
  for name, p in pairs(m:params()) do
    if not same(p, snap[name]) then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end
local function set(list) local s = {} for _, x in ipairs(list) do s[x] = true end return s end

-- ---- tiers and top: the rule, ties, rounding, refusals ----
do
  T.eq(ktq.top({0.1, 0.5, 0.3, 0.2}, 0.5), {2, 3}, "top half")
  T.eq(ktq.top({0.1, 0.5, 0.3, 0.2}, 0.3), {2}, "floor(0.3 * 4) = 1")
  T.eq(ktq.top({0.1, 0.5, 0.3, 0.2}, 0.1), {2}, "a positive fraction selects at least one layer")
  T.eq(ktq.top({1, 1, 1, 1}, 0.5), {1, 2}, "ties: the earlier layers rank first")
  local ten = {}
  for l = 1, 10 do ten[l] = l end
  T.eq(#ktq.top(ten, 0.3), 3, "0.3 * 10 is 3, not 2 (rounding tolerance)")
  local t = ktq.tiers({0.1, 0.5, 0.3, 0.2}, {high = 0.3, low = 0.3})
  T.eq({t.high, t.medium, t.low}, {{2}, {3, 4}, {1}}, "tiers of 4 layers")
  T.eq(t.order, {2, 3, 4, 1}, "ranking")
  T.eq(t.tier[1], "low", "tier by layer")
  local c = ktq.tiers({2, 2, 2, 2, 2})
  T.eq({c.high, c.medium, c.low}, {{1}, {2, 3, 4}, {5}}, "constant scores: tiers by layer order")
  local z = ktq.tiers({3, 1, 2}, {high = 0, low = 0})
  T.eq({z.high, z.medium, z.low}, {{}, {1, 2, 3}, {}}, "zero fractions")
  local one = ktq.tiers({1}, {high = 0.5, low = 0.5})
  T.eq({one.high, one.low}, {{1}, {}}, "high wins an overlap")
  T.raises(function() ktq.top({1, 2}, 1.5) end, {"fraction", "(0, 1]", "1.5"})
  T.raises(function() ktq.top({1, 2}, 0) end, {"fraction", "got 0"})
  T.raises(function() ktq.top({1, 0 / 0}, 0.5) end, {"layer 2", "nan"})
  T.raises(function() ktq.tiers({1, 2}, {high = 0.7, low = 0.4}) end, {"high + low", "0.7", "0.4"})
  T.raises(function() ktq.tiers({1, 2}, {mid = 0.1}) end, {"unknown option 'mid'"})
  T.check(chai.tiers.top == ktq.top, "chai.tiers is the same rule")
end

-- ---- tasks, slices, discipline ----
local task = sst2()
do
  local a = task:slices{calibration = 50, sensitivity = 40, heldout = 60, seed = 3}
  local b = task:slices{calibration = 50, sensitivity = 40, heldout = 60, seed = 3}
  local c = task:slices{calibration = 50, sensitivity = 40, heldout = 60, seed = 4}
  T.eq({#a.calibration.rows, #a.sensitivity.rows, #a.heldout.rows, #a.fit.rows}, {50, 40, 60, 550}, "slice sizes")
  T.check(a.calibration.rows[1] == b.calibration.rows[1] and a.fit.rows[7] == b.fit.rows[7], "same seed, same slices")
  T.check(a.calibration.rows[1] ~= c.calibration.rows[1], "another seed, other slices")
  local seen, dup = {}, false
  for _, k in ipairs({"calibration", "sensitivity", "heldout", "fit"}) do
    for _, r in ipairs(a[k].rows) do dup = dup or seen[r]; seen[r] = true end
    T.eq(a[k].split, "train", k .. " is a slice of train")
  end
  T.check(not dup, "slices are disjoint")
  local d = task:slices{}
  T.eq(#d.calibration.rows, 70, "defaults capped at a tenth of the split")
  T.raises(function() task:slices{calibration = 300, sensitivity = 300, heldout = 300} end,
           {"leave nothing to train on"})
  T.raises(function() task:slices{heldout = 0} end, {"data.heldout", "got 0"})
  T.raises(function() ktq.task("mnli") end, {"unknown task 'mnli'"})
end

-- ---- sensitivity ----
local base = model(1)
local sl = task:slices{calibration = 40, sensitivity = 40, heldout = 60, seed = 1}
do
  local before = snapshot(base)
  local r = ktq.sensitivity(base, nil, {method = "chai-ktq"})
  T.eq(#r.scores, 4, "chai-ktq: one score a layer")
  T.close(r.scores, {1 / 32, 1 / 32, 1 / 32, 1 / 32}, 1e-6, "chai-ktq on random input: 1/T in every layer")
  local rd = ktq.sensitivity(base, sl.sensitivity, {method = "chai-ktq", input = "data"})
  T.check(rd.details.input == "data" and rd.samples == 40, "chai-ktq on the data")

  -- entropy: a layer whose queries and keys are all zero attends uniformly, so its entropy is
  -- the largest possible (normalized 1); the others are below it.
  local u = ktq.clone(base)
  for name, p in pairs(u:params()) do
    if name:match("layers%.1%.self_attn%.[qk]_proj") then p:fill(0) end
  end
  local e = ktq.sensitivity(u, sl.sensitivity, {method = "entropy"})
  T.close(e.details.normalized[2], 1, 1e-6, "uniform attention: entropy = max entropy")
  T.check(e.details.normalized[1] < 1 and e.scores[1] < e.scores[2], "other layers below")
  T.close(e.scores[2], e.details.max_entropy[2], 1e-6, "scores are the mean entropy")

  -- fisher: the per-example squared gradients of each layer, summed, per weight.
  local f = ktq.sensitivity(base, sl.sensitivity, {method = "fisher", batches = 3})
  local rows = task:encode(sl.sensitivity)
  local direct = {0, 0, 0, 0}
  local count = {0, 0, 0, 0}
  local c = ktq.clone(base)
  for i = 1, 3 do
    c:zero_grad()
    c:forward_backward{input_ids = {rows[i].ids}, labels = {rows[i].label}, head = "classify"}
    for name, g in pairs(c:grads()) do
      local l = name:match("layers%.(%d+)%.")
      if l then
        l = tonumber(l) + 1
        local n = core.grad_norm({[name] = g})
        direct[l] = direct[l] + n * n
        if i == 1 then count[l] = count[l] + g:numel() end
      end
    end
  end
  for l = 1, 4 do direct[l] = direct[l] / count[l] end
  T.close(f.scores, direct, 1e-9, "fisher = Σ g² / weights, per example")
  T.eq(f.details.batches, 3, "batches caps")
  T.eq(changed_names(base, before), {}, "sensitivity leaves the weights as they were")
  local _, nvals = base:trainable()
  T.eq(nvals, base:num_parameters(), "and the trainable set")

  -- perturb (cluster): each score is the loss change with that layer alone clustered.
  local p = ktq.sensitivity(base, sl.sensitivity, {method = "perturb", k = 2})
  local stats = chai.heads.calibrate(base, nil, task:id_lists(sl.sensitivity, 32), {tokens = 32})
  local plan = chai.heads.plan(stats, {override = {2, 2, 2, 2}})
  local b0 = chai.train.evaluate(base, rows).loss
  base:set_heads({layers = {plan.layers[3]}})
  local l3 = chai.train.evaluate(base, rows).loss
  base:set_heads(nil)
  T.close(p.scores[3], l3 - b0, 1e-12, "perturb: layer 3 alone clustered")
  T.eq(p.details.layers[3].k, 2, "the k used")
  T.check(base:heads().plan == nil, "the model is dense again")
  -- layer l alone quantized, on a copy: the model itself keeps f32
  local q = ktq.sensitivity(base, sl.sensitivity, {method = "perturb", kind = "int4", group = 32})
  local c = ktq.clone(base)
  c:quantize{layers = {[2] = "int4"}, group = 32}
  T.close(q.scores[2], chai.train.evaluate(c, rows).loss - b0, 1e-9, "perturb int4: layer 2 alone quantized")
  T.eq(base:formats()["model.decoder.layers.1.fc1.weight"], "f32", "the model stays f32")
  T.raises(function() ktq.sensitivity(base, sl.sensitivity, {method = "perturb", kind = "int3"}) end,
           {"perturbation kind \"int3\" is not available", "cluster", "int4", "int8"})

  -- the result is saved as JSON
  local path = T.tmpdir() .. "/fisher.json"
  ktq.sensitivity(base, sl.sensitivity, {method = "fisher", batches = 2, out = path})
  local back = json.decode(T.read_bytes(path))
  T.eq(back.method, "fisher", "saved method")
  T.eq(#back.scores, 4, "saved scores")

  T.raises(function() ktq.sensitivity(base, sl.sensitivity, {method = "hessian"}) end,
           {"unknown method \"hessian\"", "fisher"})
  T.raises(function() ktq.sensitivity(base, task.dev, {method = "fisher"}) end,
           {"validation split"})
  T.raises(function() ktq.sensitivity(base, nil, {method = "fisher"}) end, {"needs data"})
end

-- ---- the chai step: a plan, nothing else ----
do
  local m = ktq.clone(base)
  local before = snapshot(m)
  local out, recs = ktq.apply(m, {steps = {"chai"}, chai = {k = 2, layers = {3, 4}}, seed = 1,
                                  data = {calibration = 40, sensitivity = 40, heldout = 60}}, task)
  T.check(out == m, "static clustering changes the model in place")
  local plan = m:heads().plan
  T.eq(#plan.layers, 2, "two layers clustered")
  T.eq({plan.layers[1].layer, plan.layers[1].k, plan.layers[2].layer}, {3, 2, 4}, "the plan asked for")
  T.eq(changed_names(m, before), {}, "the weights are bit-identical")
  local r = recs[1]
  T.eq(r.step, "chai", "record names the step")
  T.eq(r.k, {4, 4, 2, 2}, "k per layer")
  T.check(r.kv_bytes_per_token_after < r.kv_bytes_per_token_before, "the K cache shrinks")
  T.eq(r.bytes_before, r.bytes_after, "static clustering keeps the weights")
  T.check(r.seconds >= 0 and r.params_trained == 0, "common record fields")
  T.check(pcall(json.encode, recs), "records are JSON")

  local pm, precs = ktq.apply(ktq.clone(base), {steps = {"chai"}, chai = {k = 2, layers = {3, 4}, mode = "prune"},
                                               seed = 1, data = {calibration = 40, sensitivity = 40, heldout = 60}}, task)
  T.eq(chai.heads.layer_heads(pm), {4, 4, 2, 2}, "prune: fewer heads in layers 3-4")
  T.check(precs[1].bytes_after < precs[1].bytes_before, "prune: fewer weight bytes")
  -- chai before training trains the pruned model
  local tm, trecs = ktq.apply(ktq.clone(base), {steps = {"chai", "target"}, seed = 1,
                                               chai = {k = 2, layers = {3, 4}, mode = "prune"},
                                               target = {layers = {3}, steps = 5, eval_every = 5, lr = 1e-2},
                                               data = {calibration = 40, sensitivity = 40, heldout = 60}}, task)
  T.eq(chai.heads.layer_heads(tm), {4, 4, 2, 2}, "prune → target: still pruned")
  T.check(trecs[2].params_trained > 0 and trecs[2].training.steps == 5, "prune → target trained the pruned layer")
  T.check(not same(tm:params()["model.decoder.layers.2.self_attn.q_proj.weight"],
                   pm:params()["model.decoder.layers.2.self_attn.q_proj.weight"]), "its smaller q_proj moved")
  local om = ktq.clone(base)
  ktq.apply(om, {steps = {"chai"}, chai = {k = 2, mode = "online"}}, task)
  T.eq(om:heads().mode, "online", "online membership")
end

-- ---- target: only the selected layers and the head change; the rest bit-identical ----
local function run_target(m, extra)
  local recipe = ktq.recipe({steps = {"target"}, seed = 2,
                             data = {calibration = 40, sensitivity = 40, heldout = 60},
                             target = {fraction = 0.5, steps = 20, eval_every = 10, lr = 1e-2}}, extra)
  return ktq.apply(m, recipe, task)
end
do
  local m = ktq.clone(base)
  local before = snapshot(m)
  local _, recs = run_target(m)
  local r = recs[1]
  T.eq(#r.layers, 2, "top half of 4 layers")
  T.eq(r.sensitivity.method, "fisher", "default sensitivity")
  local want = {}
  for _, l in ipairs(r.layers) do want[l] = true end
  local changed = changed_names(m, before)
  local ok = #changed > 0
  for _, name in ipairs(changed) do
    local l = tonumber(name:match("layers%.(%d+)%.") or -1) + 1
    ok = ok and (want[l] or name == "score.weight")
  end
  T.check(ok, "only the selected layers and the head changed: " .. table.concat(changed, " "))
  T.check(set(changed)["score.weight"], "the head trained")
  T.check(not set(changed)["model.decoder.embed_tokens.weight"], "embeddings frozen")
  local _, n = m:trainable()
  T.eq(n, m:num_parameters(), "the trainable set is restored afterwards")
  T.eq(m:train_memory().grads, 0, "training memory released")
  T.check(r.params_trained > 0 and r.training.steps <= 20, "record: parameters trained, steps")
  -- explicit layers, no head
  local m2 = ktq.clone(base)
  local b2 = snapshot(m2)
  run_target(m2, {target = {layers = {2}, head = false}})
  local ch = changed_names(m2, b2)
  local only2 = #ch > 0
  for _, name in ipairs(ch) do only2 = only2 and name:match("layers%.1%.") ~= nil end
  T.check(only2, "layers = {2}, head = false: only layer 2 changed")
  -- given train rows never include the held-out slice
  local m4 = ktq.clone(base)
  local _, r4 = run_target(m4, {target = {train = task.train, epochs = 1, eval_every = 20}})
  T.eq(r4[1].training.train_rows, 700 - 60, "the whole train split minus the held-out rows")
  -- same seed, same bits
  local m3 = ktq.clone(base)
  run_target(m3)
  T.eq(changed_names(m3, snapshot(m)), {}, "the same recipe and seed give the same bits")
end

-- ---- order matters: chai → target trains the clustered model ----
do
  local recipe = {seed = 2, data = {calibration = 40, sensitivity = 40, heldout = 60},
                  chai = {k = 1}, target = {layers = {1, 2, 3, 4}, steps = 15, lr = 1e-2, eval_every = 15}}
  local a = ktq.clone(base)
  ktq.apply(a, ktq.recipe(recipe, {steps = {"chai", "target"}}), task)
  local b = ktq.clone(base)
  ktq.apply(b, ktq.recipe(recipe, {steps = {"target", "chai"}}), task)
  T.check(#changed_names(a, snapshot(b)) > 0, "chai→target and target→chai train different weights")
  T.check(a:heads().plan and b:heads().plan, "both end clustered")
end

-- ---- quant: formats from the tiers; quant → target trains against the quantized frozen layers ----
do
  local m = ktq.clone(base)
  local _, recs = ktq.apply(m, {steps = {"quant"}, seed = 2,
                                data = {calibration = 40, sensitivity = 40, heldout = 60},
                                quant = {high = 0.25, low = 0.25, group = 32, kv = "int8"}}, task)
  local r, f = recs[1], m:formats()
  T.eq(r.sensitivity.method, "perturb", "quant: perturb sensitivity by default")
  T.eq({#r.tiers.high, #r.tiers.medium, #r.tiers.low}, {1, 2, 1}, "one high, two medium, one low layer")
  local want = {}
  for tier, fmt in pairs({high = "f32", medium = "int8", low = "int4"}) do
    for _, l in ipairs(r.tiers[tier]) do want[l] = fmt end
  end
  for l = 1, 4 do
    T.eq(f[("model.decoder.layers.%d.fc1.weight"):format(l - 1)], want[l], "layer " .. l .. "'s tier format")
    T.eq(r.layers[l], want[l], "record of layer " .. l)
  end
  T.eq({f["model.decoder.embed_tokens.weight"], f.kv_cache, f["score.weight"]}, {"int8", "int8", "f32"},
       "embeddings int8, KV cache int8, score head kept")
  T.check(r.bytes_after < r.bytes_before, "the record's bytes fall") -- (little: this model is tiny and int8 pads rows to 64 values)

  local recipe = {seed = 2, data = {calibration = 40, sensitivity = 40, heldout = 60},
                  quant = {layers = {[1] = "int8", [2] = "int4"}, group = 32, embeddings = "f32"},
                  target = {layers = {3, 4}, head = false, steps = 15, lr = 1e-2, eval_every = 15}}
  local a = ktq.clone(base)
  ktq.apply(a, ktq.recipe(recipe, {steps = {"quant", "target"}}), task)
  local b = ktq.clone(base)
  ktq.apply(b, ktq.recipe(recipe, {steps = {"target", "quant"}}), task)
  local q = ktq.clone(base):quantize{layers = {[1] = "int8", [2] = "int4"}, group = 32}
  local qs = snapshot(q)
  local frozen_same = true
  for _, name in ipairs(changed_names(a, qs)) do frozen_same = frozen_same and not name:match("layers%.[01]%.") end
  T.check(frozen_same, "quant→target: the quantized layers keep their codes")
  local c3 = changed_names(a, snapshot(b))
  local trained_differs = false
  for _, name in ipairs(c3) do trained_differs = trained_differs or name:match("layers%.[23]%.") ~= nil end
  T.check(trained_differs, "quant→target and target→quant train layers 3-4 differently")
  T.eq(a:formats()["model.decoder.layers.1.fc2.weight"], "int4", "still int4 after target")
end

-- ---- kd ----
do
  local m = ktq.clone(base)
  local before = snapshot(m)
  local _, recs = ktq.apply(m, {steps = {"kd"}, seed = 3, data = {calibration = 40, sensitivity = 40, heldout = 60},
                                kd = {steps = 10, eval_every = 10, alpha = 0.7, T = 3}}, task)
  local r = recs[1]
  T.eq({r.T, r.alpha, r.teacher}, {3, 0.7, "unmodified model"}, "kd record")
  local nparams = 0
  for _ in pairs(m:params()) do nparams = nparams + 1 end
  T.eq(#r.trained, nparams, "all unfrozen")
  T.check(set(changed_names(m, before))["model.decoder.embed_tokens.weight"], "without target: every unfrozen parameter trains")
  -- with target in the recipe: kd trains the target selection
  local m2 = ktq.clone(base)
  local b2 = snapshot(m2)
  local _, recs2 = ktq.apply(m2, {steps = {"kd", "target"}, seed = 3,
                                  data = {calibration = 40, sensitivity = 40, heldout = 60},
                                  kd = {steps = 10, eval_every = 10}, target = {layers = {4}, steps = 5, eval_every = 5}}, task)
  T.eq(recs2[1].layers, {4}, "kd takes target's selection")
  local ok = true
  for _, name in ipairs(changed_names(m2, b2)) do
    ok = ok and (name:match("layers%.3%.") ~= nil or name == "score.weight")
  end
  T.check(ok, "kd + target: only layer 4 and the head changed")
  -- a given teacher; one with another vocabulary is refused, naming both sizes
  local other = chai.opt.create({vocab_size = 50, hidden_size = 32, num_hidden_layers = 2,
                                 num_attention_heads = 4, ffn_dim = 64, max_position_embeddings = 64,
                                 num_labels = 2}, {seed = 5})
  T.raises(function() ktq.apply(ktq.clone(base), {steps = {"kd"}, kd = {teacher = other}}, task) end,
           {"kd.teacher has vocab_size 50, the student 64"})
  -- drop_layers: a student of fewer layers made from the model's own
  local small = ktq.drop_layers(base, {2, 4})
  T.eq(small.config.num_hidden_layers, 2, "two layers left")
  local sp, bp = small:params(), base:params()
  T.check(same(sp["model.decoder.layers.1.fc1.weight"], bp["model.decoder.layers.2.fc1.weight"]),
          "new layer 2 = old layer 3")
  T.check(same(sp["score.weight"], bp["score.weight"]), "head copied")
  local sm, srec = ktq.apply(ktq.clone(base), {steps = {"kd"}, seed = 3, data = {calibration = 40, sensitivity = 40, heldout = 60},
                                              kd = {steps = 5, eval_every = 5, drop_layers = {1}}}, task)
  T.eq(sm.config.num_hidden_layers, 3, "kd with drop_layers returns the smaller student")
  T.check(srec[1].bytes_after < srec[1].bytes_before, "fewer weight bytes")
end

-- ---- a random score head is trained first (a pretrained LM's head) ----
do
  local tmp = T.tmpdir()
  base:save(tmp .. "/m")
  local w = core.load_safetensors(tmp .. "/m/model.safetensors")
  w["score.weight"] = nil
  core.save_safetensors(tmp .. "/m/model.safetensors", w)
  local lm = chai.opt.load(tmp .. "/m", {quiet = true})
  T.check(lm:score_random(), "a checkpoint without score.weight: a random head")
  local before = snapshot(lm)
  local out, recs = ktq.apply(lm, ktq.recipe("baseline", {head = {steps = 20, lr = 1e-2}}), task)
  T.eq(#recs, 1, "baseline on a random head: one step")
  T.eq(recs[1].step, "head", "the head step ran first")
  T.check(not out:score_random(), "the head is now trained")
  T.eq(changed_names(lm, before), {"score.weight"}, "only the head changed")
  local _, again = ktq.apply(lm, ktq.recipes.baseline, task)
  T.eq(#again, 0, "a trained head is left alone")
  T.raises(function() lm:score_random(true) end, {"only false"})
  local fresh = chai.opt.load(tmp .. "/m", {quiet = true})
  local pm, prec = ktq.prepare(fresh, task, {head = {steps = 5}, seed = 1})
  T.check(pm == fresh and prec.step == "head" and prec.training.steps == 5, "prepare trains a random head once")
  T.check(select(2, ktq.prepare(fresh, task)) == nil, "and leaves a trained one alone")
  local cl = ktq.clone(chai.opt.load(tmp .. "/m", {quiet = true}))
  local _, crec = ktq.apply(cl, ktq.recipe("baseline", {head = {steps = 5}}), task)
  T.eq(crec[1].step, "head", "a copy of a random-headed model is still random-headed")
end

-- ---- bad recipes raise errors naming the value ----
do
  local m = ktq.clone(base)
  T.raises(function() ktq.apply(m, {steps = {"chai", "prune_all"}}, task) end,
           {"unknown step 'prune_all'", "steps[2]", "chai", "kd", "target"})
  T.raises(function() ktq.apply(m, {steps = {"target"}, target = {fraction = 1.5}}, task) end,
           {"target.fraction", "(0, 1]", "1.5"})
  T.raises(function() ktq.apply(m, {steps = {"target"}, target = {fraction = 0}}, task) end,
           {"target.fraction", "got 0"})
  T.raises(function() ktq.apply(m, {steps = {"chai"}, chai = {calibration = task.dev}}, task) end,
           {"chai.calibration is the validation split", "train split"})
  T.raises(function() ktq.apply(m, {steps = {"target"}, target = {heldout = task.dev}}, task) end,
           {"target.heldout is the validation split"})
  T.raises(function() ktq.apply(m, {steps = {"chai"}, chai = {texts = {task.dev.rows[3]}}}, task) end,
           {"chai.texts", "row 1 is in the validation split"})
  T.raises(function() ktq.apply(m, {steps = {"chai"}, chai = {calibration = "validation"}}, task) end,
           {"chai.calibration is the validation split"})
  T.raises(function() ktq.apply(m, {steps = {"kd"}, kd = {alpha = 2}}, task) end, {"kd.alpha", "got 2"})
  T.raises(function() ktq.apply(m, {steps = {"kd"}, kd = {drop_layers = {9}}}, task) end,
           {"kd.drop_layers[1] = 9"})
  T.raises(function() ktq.apply(m, {steps = {"chai"}, chai = {mode = "dynamic"}}, task) end,
           {"chai.mode", "dynamic"})
  T.raises(function() ktq.apply(m, {steps = {"chai"}, chai = {kk = 2}}, task) end, {"unknown option 'kk'"})
  T.raises(function() ktq.apply(m, {steps = {"chai"}, targt = {}}, task) end, {"unknown recipe key 'targt'"})
  T.raises(function() ktq.apply(m, {steps = {}, seed = 1.5}, task) end, {"recipe.seed", "1.5"})
  T.raises(function() ktq.apply(m, ktq.recipe("chai_quant", {quant = {formats = {low = "int3"}}}), task) end,
           {"quant.formats.low", "int3"})
  T.raises(function() ktq.apply(m, ktq.recipe("chai_ktq", {quant = {high = 0.6, low = 0.6}}), task) end,
           {"quant.high + quant.low", "0.6"})
  T.raises(function() ktq.apply(m, {steps = {"quant"}, quant = {kv = "int4"}}, task) end, {"quant.kv", "int4"})
  T.raises(function() ktq.apply(m, {steps = {"quant"}, quant = {layers = {[9] = "int8"}}}, task) end,
           {"quant.layers", "9"})
  T.eq(m:heads().plan, nil, "a refused recipe did nothing")
  T.eq(m:formats()["model.decoder.layers.0.fc1.weight"], "f32", "and quantized nothing")
  -- a user's own step is any function
  local seen = nil
  local _, recs = ktq.apply(m, {steps = {function(mm, ctx) seen = ctx.task.name; return mm, {what = "mine"} end}}, task)
  T.eq({seen, recs[1].what, recs[1].step}, {"sst2", "mine", "step1"}, "a user's step")
  T.raises(function() ktq.apply(m, {steps = {function() return 1 end}}, task) end, {"must return the model"})
  T.eq(ktq.recipe("chai_kd", {kd = {alpha = 0.9}}).kd, {alpha = 0.9, T = 2, steps = 400}, "recipe overrides merge")
  for _, name in ipairs(ktq.recipe_names) do T.check(ktq.recipes[name] ~= nil, "recipe " .. name) end
end

-- ---- PIQA: zero-shot, no train split ----
do
  local tok = {encode = function(_, text, o)
    local t = (o and o.add_bos) and {2} or {}
    for ch in text:gmatch(".") do t[#t + 1] = 3 + ch:byte() % 60 end
    return t
  end}
  local docs = {}
  for i = 1, 12 do
    docs[i] = {goal = "goal " .. i, sol1 = "first way " .. i, sol2 = "other " .. (i * 7), label = i % 2}
  end
  local piqa = ktq.task("piqa", {tokenizer = tok, validation = docs})
  T.check(piqa.train == nil and piqa.kind == "zeroshot", "piqa has no train split here")
  local m = ktq.clone(base)
  T.raises(function() ktq.apply(m, {steps = {"target"}}, piqa) end, {"target", "zero-shot"})
  T.raises(function() ktq.apply(m, {steps = {"chai"}}, piqa) end, {"no train split to calibrate on", "texts"})
  T.raises(function() piqa:slices() end, {"has no train split"})
  local _, recs = ktq.apply(m, {steps = {"chai"}, chai = {texts = {"a calibration text", "another one here"}, k = 2}}, piqa)
  T.eq(recs[1].calibration_samples, 2, "piqa: chai on the user's own texts")
  local r = ktq.measure(m, piqa, {reference = base, repeats = 1, batch_sizes = {4}})
  T.eq(r.n, 12, "piqa measured")
  T.check(r.acc_norm and r.paired.acc_norm, "acc_norm and its paired difference")
end

-- ---- RTE: sentence pairs, classified by the score head ----
do
  local tok = {encode = function(_, text, o)
    local t = (o == nil or o.add_bos ~= false) and {2} or {}
    for ch in text:gmatch(".") do t[#t + 1] = 3 + ch:byte() % 60 end
    return t
  end}
  local rows = {}
  for i = 1, 300 do
    rows[i] = {sentence1 = "premise " .. i, sentence2 = (i % 2 == 0 and "yes " or "no ") .. i, label = i % 2}
  end
  local rte = ktq.task("rte", {tokenizer = tok, train = {table.unpack(rows, 1, 240)},
                               validation = {table.unpack(rows, 241)}})
  T.eq(rte.kind, "classify", "rte is classification")
  local enc = rte:encode(rte.dev)
  T.eq(enc[1].ids, tok:encode("premise 241\nno 241"), "the pair is read as sentence1, newline, sentence2")
  local m, recs = ktq.apply(ktq.clone(base), {steps = {"target"}, seed = 1, target = {layers = {4}, steps = 3, eval_every = 3},
                                              data = {calibration = 20, sensitivity = 20, heldout = 20}}, rte)
  T.eq(recs[1].training.steps, 3, "rte trains")
  T.eq(ktq.measure(m, rte, {latency = false, throughput = false, rss = false}).n, 60, "rte measured")
end

-- ---- measure ----
do
  local m = ktq.clone(base)
  run_target(m)
  local r = ktq.measure(m, task, {reference = base, repeats = 2, limit = 60, bootstrap = 500})
  T.eq(r.n, 60, "limit")
  local acc = chai.train.evaluate(m, task:encode(task.dev)).accuracy
  local d60 = {table.unpack(task:encode(task.dev), 1, 60)}
  local a60 = chai.train.evaluate(m, d60).accuracy
  local r60 = chai.train.evaluate(base, d60).accuracy
  T.close(r.accuracy.value, a60, 1e-12, "accuracy")
  T.check(r.accuracy.low <= a60 and a60 <= r.accuracy.high, "the 95% interval holds it")
  T.close(r.paired.difference, a60 - r60, 1e-12, "paired difference")
  T.check(r.paired.low <= r.paired.difference and r.paired.difference <= r.paired.high, "bootstrap interval")
  T.eq(r.paired.only_model - r.paired.only_reference, math.floor((a60 - r60) * 60 + 0.5), "discordant pairs")
  T.check(r.latency_ms.p50 <= r.latency_ms.p90 and r.latency_ms.p90 <= r.latency_ms.p99, "latency percentiles")
  T.eq({r.throughput[1].batch_size, r.throughput[2].batch_size}, {16, 64}, "throughput at 16 and 64")
  T.check(r.throughput[1].sentences_per_s > 0 and r.throughput[1].tokens_per_s > r.throughput[1].sentences_per_s, "rates")
  T.eq(r.weight_bytes.by_format.f32, r.weight_bytes.total, "weight bytes by format")
  T.eq(r.kv_bytes_per_token, base:memory().kv_cache_bytes_per_token, "KV bytes per token")
  T.check(r.peak_rss_bytes == nil or r.peak_rss_bytes > 0, "peak RSS")
  T.check(pcall(json.encode, r), "JSON-ready")
  T.check(acc >= 0, "full dev evaluates")
  local self = ktq.measure(base, task, {reference = base, latency = false, throughput = false, rss = false})
  T.eq({self.paired.difference, self.paired.low, self.paired.high}, {0, 0, 0}, "a model against itself")
  local p, lo, hi = require("chai.ktq_measure").wilson(0, 10)
  T.check(p == 0 and lo == 0 and hi > 0.2 and hi < 0.35, "Wilson interval at 0/10")
  T.raises(function() ktq.measure(base, task, {repeat_count = 2}) end, {"unknown option 'repeat_count'"})
end

-- ---- clone, freeze by name, train.run's restore_best ----
do
  local c = ktq.clone(base)
  T.eq(changed_names(c, snapshot(base)), {}, "clone: bit-identical")
  c:params()["score.weight"]:fill(0)
  T.check(not same(c:params()["score.weight"], base:params()["score.weight"]), "clone: independent")
  c:freeze()
  c:unfreeze{names = {"score.weight"}}
  T.eq((c:trainable()), {"score.weight"}, "unfreeze by name")
  T.raises(function() c:freeze{names = {"nope"}} end, {"no parameter named 'nope'"})
  T.raises(function() c:freeze{names = {"score.weight"}, layers = {1}} end, {"cannot be combined"})
  local rows = task:encode(sl.fit)
  local held = task:encode(sl.heldout)
  local m = ktq.clone(base)
  local res = chai.train.run{model = m, train = rows, eval = held, max_steps = 40, eval_every = 5,
                             batch_size = 16, optimizer = {lr = 3e-2}, restore_best = true, seed = 1}
  T.close(chai.train.evaluate(m, held).accuracy, res.best, 1e-12, "restore_best: the model leaves at its best evaluation")
end

T.finish()
