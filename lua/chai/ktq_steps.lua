-- The built-in chai.ktq steps. A step is function(model, ctx, opts) → model, record: it may change
-- the model in place or return a new one (pruning, fewer layers), and says in its record what it
-- did. chai.ktq.apply adds the common fields (step, seconds, weight and KV bytes before/after,
-- parameters trained) around it. ctx (see chai.ktq.apply) gives the task, the seed, the train
-- slices (ctx:slices(step)), the unmodified model (ctx:original()), and the layer selection that
-- "target" and "kd" share (ctx:selection(model)).
--
--   chai    calibrate on train texts, plan with the elbow, apply static clustering (default),
--           online membership, or structural pruning
--   target  fine-tune only the most sensitive layers (+ the classification head), the rest frozen
--   kd      distil a teacher (default: the unmodified model) into the current model
--   quant   formats per layer from the tiers of a sensitivity method (high f32, medium int8, low
--           int4 by default), the embeddings int8, the KV cache int8 as an option
--   head    train the classification head alone (a pretrained LM's random score head; apply runs
--           it first when needed)
local heads = require "chai.heads"
local train = require "chai.train"
local opt = require "chai.opt"
local tiers = require "chai.tiers"
local task_mod = require "chai.ktq_task"
local util = require "chai.ktq_model"

local M = {steps = {}, checks = {}}

local check_range, check_count = util.check_range, util.check_count

-- ---------------------------------------------------------------------------------------------
-- Training shared by target, kd and head

local TRAIN_KNOWN = {steps = true, epochs = true, time_budget = true, lr = true, schedule = true,
                     warmup = true, weight_decay = true, batch_size = true, eval_every = true,
                     patience = true, min_delta = true, label_smoothing = true, dropout = true,
                     max_grad_norm = true, heldout = true, train = true, rows = true}

local function check_training(where, o)
  if o.steps ~= nil then check_count(where .. ".steps", o.steps) end
  if o.epochs ~= nil then check_count(where .. ".epochs", o.epochs) end
  if o.batch_size ~= nil then check_count(where .. ".batch_size", o.batch_size) end
  if o.eval_every ~= nil then check_count(where .. ".eval_every", o.eval_every) end
  if o.patience ~= nil then check_count(where .. ".patience", o.patience) end
  if o.rows ~= nil then check_count(where .. ".rows", o.rows) end
  if o.lr ~= nil then check_range(where .. ".lr", o.lr, 0, math.huge, true, true) end
  if o.time_budget ~= nil then check_range(where .. ".time_budget", o.time_budget, 0, math.huge, true, true) end
  if o.weight_decay ~= nil then check_range(where .. ".weight_decay", o.weight_decay, 0, math.huge) end
  if o.label_smoothing ~= nil then check_range(where .. ".label_smoothing", o.label_smoothing, 0, 1, false, true) end
  if o.dropout ~= nil then check_range(where .. ".dropout", o.dropout, 0, 1, false, true) end
  if o.warmup ~= nil then check_range(where .. ".warmup", o.warmup, 0, math.huge) end
  if o.schedule ~= nil and o.schedule ~= "linear" and o.schedule ~= "cosine" and o.schedule ~= "constant" then
    error(("%s.schedule must be \"linear\", \"cosine\" or \"constant\", got %s"):format(where, tostring(o.schedule)), 0)
  end
end

-- Up to n rows of a list (a prefix: the slices are already seeded shuffles).
local function prefix(rows, n)
  if not n or n >= #rows then return rows end
  local out = {}
  for i = 1, n do out[i] = rows[i] end
  return out
end

-- The rows a training step learns from and the held-out rows it stops on, checked.
local function training_rows(ctx, name, o)
  local s = ctx:slices(name)
  local fit, heldout = s.fit, s.heldout
  if o.train ~= nil then fit = ctx:dataset(o.train, name .. ".train") end
  if o.heldout ~= nil then heldout = ctx:dataset(o.heldout, name .. ".heldout") end
  if fit ~= s.fit or heldout ~= s.heldout then -- given rows: the held-out ones never train
    local held = {}
    for _, r in ipairs(heldout.rows) do held[r] = true end
    local keep = {}
    for _, r in ipairs(fit.rows) do if not held[r] then keep[#keep + 1] = r end end
    if #keep < #fit.rows then fit = task_mod.user_dataset(ctx.task, keep, "fit") end
  end
  return fit, heldout
end

-- Runs chai.train.run with a step's options; returns the run's result and a compact curve.
local function fit_model(model, ctx, name, o, defaults, extra)
  local task = ctx.task
  local fit_ds, heldout_ds = training_rows(ctx, name, o)
  local bs = o.batch_size or defaults.batch_size
  local steps = o.steps
  local want = o.rows
  if not o.epochs then
    steps = steps or defaults.steps
    want = want or steps * bs -- one pass over the rows the steps will see
  end
  if want and want < #fit_ds.rows then -- encode only those (the slice is a seeded shuffle)
    fit_ds = task_mod.user_dataset(task, prefix(fit_ds.rows, want), "fit")
  end
  local rows = task:encode(fit_ds)
  local heldout = task:encode(heldout_ds)
  if extra.annotate then rows = extra.annotate(rows) end
  local every = o.eval_every or defaults.eval_every
  local curve = {step = {}, loss = {}}
  local run = {model = model, train = rows, eval = heldout, batch_size = bs,
               epochs = o.epochs, max_steps = not o.epochs and steps or nil,
               seed = ctx.seed * 1000 + ctx.index, eval_every = every, eval_batch_size = 64,
               early_stopping = {patience = o.patience or defaults.patience, min_delta = o.min_delta or 0},
               restore_best = true, time_budget = o.time_budget, label_smoothing = o.label_smoothing,
               dropout = o.dropout, progress = ctx.progress,
               optimizer = {kind = "adamw", lr = o.lr or defaults.lr,
                            weight_decay = o.weight_decay or defaults.weight_decay,
                            schedule = o.schedule or "linear", max_grad_norm = o.max_grad_norm or 1.0},
               on_step = function(r)
                 curve.step[#curve.step + 1] = r.step
                 curve.loss[#curve.loss + 1] = r.loss
               end}
  for k, v in pairs(extra.run or {}) do run[k] = v end
  if o.warmup then -- steps, or a fraction (< 1) of them; default chai.train.run's 10%
    local total = run.max_steps or ((#rows + bs - 1) // bs) * (o.epochs or 1)
    run.optimizer.warmup = math.floor(o.warmup < 1 and o.warmup * total or o.warmup)
  end
  local res = train.run(run)
  -- Thin long curves to at most 500 points (every k-th step, the last kept).
  local n = #curve.step
  if n > 500 then
    local k = math.ceil(n / 500)
    local thin = {step = {}, loss = {}}
    for i = 1, n do
      if i % k == 0 or i == n then
        thin.step[#thin.step + 1], thin.loss[#thin.loss + 1] = curve.step[i], curve.loss[i]
      end
    end
    curve = thin
  end
  local evals = {}
  for i, h in ipairs(res.history or {}) do evals[i] = {step = h.step, accuracy = h.accuracy, loss = h.loss} end
  model:release_training()
  return {steps = res.step, total_steps = res.total_steps, epochs = res.epoch, stopped = res.stopped,
          best_step = res.best_step, heldout_accuracy = res.best, restored_best = res.restored_best,
          train_rows = #rows, heldout_rows = #heldout, seconds = res.seconds,
          curve = curve, heldout_evals = evals}
end

local function need_classify(ctx, name)
  if ctx.task.kind ~= "classify" then
    error(("step %s trains the classification head, and task %s is zero-shot multiple choice "
           .. "without a train split; it cannot run here"):format(name, ctx.task.name), 0)
  end
end

-- Runs fn with exactly `names` trainable, then restores the trainable set the model had.
local function with_trainable(model, names, fn)
  local keep = util.trainable(model)
  util.set_trainable(model, names)
  local ok, res = pcall(fn)
  util.set_trainable(model, keep)
  if not ok then error(res, 0) end
  return res
end

-- The trainable names for `layers` (+ the head, + other parts), among those trainable now.
local function names_for(model, layers, with_head, parts)
  local want = {}
  for _, l in ipairs(layers) do want[l] = true end
  local partset = {}
  for _, p in ipairs(parts) do partset[p] = true end
  local now = {}
  for _, n in ipairs((util.trainable(model))) do now[n] = true end
  local out = {}
  for name in pairs(model:params()) do
    local l = util.layer_of(name)
    local part = name:match("self_attn%.") and "attention" or name:match("%.fc%d") and "ffn" or "norms"
    local pick = (l and want[l] and partset[part]) or (with_head and (name == "score.weight"))
    if pick and now[name] then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

local function values_of(model, names)
  local params, n = model:params(), 0
  for _, name in ipairs(names) do n = n + params[name]:numel() end
  return n
end

-- ---------------------------------------------------------------------------------------------
-- chai

local CHAI_KNOWN = {mode = true, k = true, layers = true, min_layer = true, tokens = true,
                    samples = true, sensitivity = true, keep = true, plan = true, calibration = true,
                    method = true, texts = true}

M.checks.chai = function(o, model)
  util.check_opts("chai", o, CHAI_KNOWN)
  local mode = o.mode or "static"
  if mode ~= "static" and mode ~= "online" and mode ~= "prune" then
    error(("chai.mode must be \"static\", \"online\" or \"prune\", got %s"):format(tostring(mode)), 0)
  end
  if o.keep ~= nil then
    if mode ~= "prune" then error("chai.keep applies to mode \"prune\" only", 0) end
    check_count("chai.keep", o.keep)
  end
  local L, H = model.config.num_hidden_layers, model.config.num_attention_heads
  if o.k ~= nil then
    local ks = type(o.k) == "table" and o.k or nil
    if not ks then
      if math.type(o.k) ~= "integer" or o.k < 1 or o.k > H then
        error(("chai.k must be an integer in 1..%d (or {[layer] = k}), got %s"):format(H, tostring(o.k)), 0)
      end
    else
      for l, k in pairs(ks) do
        if math.type(l) ~= "integer" or l < 1 or l > L then
          error(("chai.k: layer %s is not a layer 1..%d"):format(tostring(l), L), 0)
        end
        if math.type(k) ~= "integer" or k < 1 or k > H then
          error(("chai.k[%d] must be an integer in 1..%d, got %s"):format(l, H, tostring(k)), 0)
        end
      end
    end
  end
  if o.layers ~= nil then
    if type(o.layers) ~= "table" then error("chai.layers must be a list of layers", 0) end
    for i, l in ipairs(o.layers) do
      if math.type(l) ~= "integer" or l < 1 or l > L then
        error(("chai.layers[%d] = %s is not a layer 1..%d"):format(i, tostring(l), L), 0)
      end
    end
  end
  if o.min_layer ~= nil and (math.type(o.min_layer) ~= "integer" or o.min_layer < 1 or o.min_layer > L) then
    error(("chai.min_layer must be a layer 1..%d, got %s"):format(L, tostring(o.min_layer)), 0)
  end
  if o.tokens ~= nil and (math.type(o.tokens) ~= "integer" or o.tokens < 2) then
    error("chai.tokens must be an integer >= 2, got " .. tostring(o.tokens), 0)
  end
  if o.samples ~= nil then check_count("chai.samples", o.samples) end
  if o.method ~= nil and o.method ~= "kmeans-elbow" and o.method ~= "chai-ktq" then
    error(("chai.method must be \"kmeans-elbow\" or \"chai-ktq\", got %s"):format(tostring(o.method)), 0)
  end
end

M.steps.chai = function(model, ctx, o)
  local mode = o.mode or "static"
  local L, H = model.config.num_hidden_layers, model.config.num_attention_heads
  local plan, source, samples = o.plan, "given", nil
  if type(plan) == "string" then plan = heads.load_plan(plan, {layers = L, heads = H}) end
  if not plan then
    if model:heads().plan then
      error("the model already has a head plan (a chai step ran before); one chai step per recipe", 0)
    end
    local ds
    if o.texts ~= nil then
      ds = task_mod.user_dataset(ctx.task, task_mod.check_train_data(ctx.task, o.texts, "chai.texts"), "calibration")
    elseif o.calibration ~= nil and math.type(o.calibration) ~= "integer" then
      ds = ctx:dataset(o.calibration, "chai.calibration")
    else
      if not ctx.task.train then
        error(("task %s has no train split to calibrate on; pass chai = {texts = {...}} (texts that "
               .. "are not in the validation split)"):format(ctx.task.name), 0)
      end
      ds = ctx:slices("chai").calibration
      if math.type(o.calibration) == "integer" then ds = task_mod.user_dataset(ctx.task, prefix(ds.rows, o.calibration), "calibration") end
    end
    local tokens = o.tokens or 32
    local lists = ctx.task:id_lists(ds, tokens)
    lists = prefix(lists, o.samples)
    local stats = heads.calibrate(model, nil, lists, {tokens = tokens})
    samples = stats.n_samples
    local override = nil
    if o.k then
      override = {}
      for l = 1, L do override[l] = type(o.k) == "table" and o.k[l] or (type(o.k) ~= "table" and o.k or nil) end
    end
    local skip = nil
    if o.layers then
      local want = {}
      for _, l in ipairs(o.layers) do want[l] = true end
      skip = {}
      for l = 1, L do if not want[l] then skip[#skip + 1] = l end end
    end
    -- The paper's rule, by default: the early layers stay dense (its LLaMA-7B config leaves the
    -- first 18 of 32 unclustered); here the first quarter, at least one layer.
    local min_layer = o.min_layer
    if min_layer == nil and o.layers == nil and type(o.k) ~= "table" then min_layer = L // 4 + 1 end
    plan = heads.plan(stats, {method = o.method, sensitivity = o.sensitivity, override = override,
                              skip_layers = skip, min_layer = min_layer, seed = ctx.seed})
    source = o.method or "kmeans-elbow"
  end
  local ks, curves = {}, {}
  for l = 1, L do ks[l] = H end
  for _, e in ipairs(plan.layers or {}) do ks[e.layer] = e.k or #e.clusters end
  for _, info in ipairs(plan.meta and plan.meta.layers or {}) do
    curves[#curves + 1] = {layer = info.layer, inertia = info.inertia, elbow = info.elbow,
                           rule = info.rule, k = info.k}
  end
  local out = model
  if mode == "prune" then
    if #(plan.layers or {}) == 0 then
      out = model -- nothing to prune: the elbow kept every layer dense
    else
      out = heads.prune(model, plan, {keep = o.keep or 1})
    end
  else
    model:set_heads(plan, {mode = mode})
  end
  local clustered = {}
  for l = 1, L do if ks[l] < H then clustered[#clustered + 1] = ("%d:k=%d"):format(l, ks[l]) end end
  local what = #clustered == 0 and "no layer clustered (the elbow kept every layer dense)"
    or ("%s clustering of layers %s"):format(mode == "prune" and "structural pruning after" or mode,
                                            table.concat(clustered, ", "))
  return out, {what = what, mode = mode, k = ks, plan = {layers = plan.layers}, curves = curves,
               plan_source = source, calibration_samples = samples}
end

-- ---------------------------------------------------------------------------------------------
-- quant

local FORMATS = {f32 = true, f16 = true, bf16 = true, int8 = true, int4 = true}
local QUANT_KNOWN = {sensitivity = true, sensitivity_opts = true, high = true, low = true,
                     formats = true, layers = true, embeddings = true, lm_head = true, score = true,
                     kv = true, group = true, method = true, zero_point = true, scales = true}
local QUANT_DEFAULTS = {sensitivity = "perturb", high = 0.3, low = 0.3, embeddings = "int8",
                        formats = {high = "f32", medium = "int8", low = "int4"}}
M.quant_defaults = QUANT_DEFAULTS

local function check_format(where, f)
  if not FORMATS[f] then
    error(("%s must be a format (f32, f16, bf16, int8, int4), got %s"):format(where, tostring(f)), 0)
  end
end

M.checks.quant = function(o, model)
  util.check_opts("quant", o, QUANT_KNOWN)
  local L = model.config.num_hidden_layers
  for _, k in ipairs({"high", "low"}) do
    if o[k] ~= nil then check_range("quant." .. k, o[k], 0, 1) end
  end
  if (o.high or QUANT_DEFAULTS.high) + (o.low or QUANT_DEFAULTS.low) > 1 + 1e-12 then
    error(("quant.high + quant.low must be at most 1, got %s + %s"):format(
      tostring(o.high or QUANT_DEFAULTS.high), tostring(o.low or QUANT_DEFAULTS.low)), 0)
  end
  if o.formats ~= nil then
    if type(o.formats) ~= "table" then error("quant.formats must be a table {high=, medium=, low=}", 0) end
    for k, f in pairs(o.formats) do
      if k ~= "high" and k ~= "medium" and k ~= "low" then
        error(("quant.formats.%s: unknown tier (known: high, medium, low)"):format(tostring(k)), 0)
      end
      check_format("quant.formats." .. k, f)
    end
  end
  if o.layers ~= nil then
    if type(o.layers) ~= "table" then error("quant.layers must be a table {[layer] = format}", 0) end
    for l, f in pairs(o.layers) do
      if math.type(l) ~= "integer" or l < 1 or l > L then
        error(("quant.layers: %s is not a layer 1..%d"):format(tostring(l), L), 0)
      end
      if type(f) == "string" then check_format(("quant.layers[%d]"):format(l), f) end
    end
  end
  for _, k in ipairs({"embeddings", "lm_head", "score"}) do
    if o[k] ~= nil then check_format("quant." .. k, o[k]) end
  end
  if o.kv ~= nil and o.kv ~= "f32" and o.kv ~= "int8" then
    error("quant.kv must be \"f32\" or \"int8\", got " .. tostring(o.kv), 0)
  end
  if o.group ~= nil and o.group ~= 32 and o.group ~= 64 and o.group ~= 128 then
    error("quant.group must be 32, 64 or 128, got " .. tostring(o.group), 0)
  end
  if o.method ~= nil and o.method ~= "rtn" and o.method ~= "mse" then
    error("quant.method must be \"rtn\" or \"mse\", got " .. tostring(o.method), 0)
  end
  local sv = o.sensitivity
  if sv ~= nil and type(sv) ~= "string" and not (type(sv) == "table" and type(sv.scores) == "table") then
    error("quant.sensitivity must be a method name or a result with scores", 0)
  end
  if type(sv) == "string" then
    local known = false
    for _, m in ipairs(require("chai.ktq_sensitivity").methods) do known = known or m == sv end
    if not known then
      error(("quant.sensitivity: unknown method %q (known: %s)"):format(sv,
            table.concat(require("chai.ktq_sensitivity").methods, ", ")), 0)
    end
  end
end

M.steps.quant = function(model, ctx, o)
  local formats = {}
  for k, v in pairs(QUANT_DEFAULTS.formats) do formats[k] = (o.formats or {})[k] or v end
  local layers, tier_of, sens = o.layers, nil, nil
  if not layers then
    sens = o.sensitivity or QUANT_DEFAULTS.sensitivity
    if type(sens) == "string" then
      local so = {method = sens, seed = ctx.seed}
      -- perturb by default as the tiers will: each layer alone in the low tier's format
      if sens == "perturb" then
        so.kind = (formats.low == "int8" or formats.low == "int4" or formats.low == "bf16") and formats.low or "int8"
        so.group = o.group
      end
      for k, v in pairs(o.sensitivity_opts or {}) do so[k] = v end
      local ds = nil
      if not (sens == "chai-ktq" and (so.input or "random") == "random") then ds = ctx:slices("quant").sensitivity end
      sens = require("chai.ktq_sensitivity").sensitivity(model, ds, so)
    end
    local spec, t = require("chai.quant").plan(sens.scores, {high = o.high or QUANT_DEFAULTS.high,
                                                              low = o.low or QUANT_DEFAULTS.low,
                                                              formats = formats})
    layers, tier_of = spec.layers, t
  end
  local spec = {layers = layers, embeddings = o.embeddings or QUANT_DEFAULTS.embeddings,
                lm_head = o.lm_head, score = o.score, kv = o.kv, group = o.group,
                method = o.method, zero_point = o.zero_point, scales = o.scales}
  model:quantize(spec)
  local L, per_layer = model.config.num_hidden_layers, {}
  for l = 1, L do
    local f = layers[l]
    per_layer[l] = type(f) == "table" and "mixed" or (f or "kept")
  end
  return model, {what = ("quantized layers %s; embeddings %s%s"):format(table.concat(per_layer, ", "),
                                                                     spec.embeddings,
                                                                     o.kv and (", KV cache " .. o.kv) or ""),
                 layers = per_layer, tiers = tier_of, spec = spec,
                 sensitivity = sens and {method = sens.method, scores = sens.scores} or nil}
end

-- ---------------------------------------------------------------------------------------------
-- Layer selection (target, and kd when the recipe also has target)

local SELECT_KNOWN = {fraction = true, layers = true, sensitivity = true, sensitivity_opts = true,
                      head = true, parts = true}

local function check_selection(where, o, model)
  if o.fraction ~= nil then check_range(where .. ".fraction", o.fraction, 0, 1, true, false) end
  local L = model.config.num_hidden_layers
  if o.layers ~= nil then
    if type(o.layers) ~= "table" or #o.layers == 0 then error(where .. ".layers must be a non-empty list of layers", 0) end
    for i, l in ipairs(o.layers) do
      if math.type(l) ~= "integer" or l < 1 or l > L then
        error(("%s.layers[%d] = %s is not a layer 1..%d"):format(where, i, tostring(l), L), 0)
      end
    end
  end
  local s = o.sensitivity
  if s ~= nil and type(s) ~= "string" and not (type(s) == "table" and type(s.scores) == "table") then
    error(where .. ".sensitivity must be a method name or a result with scores", 0)
  end
  if type(s) == "string" then
    local known = false
    for _, m in ipairs(require("chai.ktq_sensitivity").methods) do known = known or m == s end
    if not known then
      error(("%s.sensitivity: unknown method %q (known: %s)"):format(where, s,
            table.concat(require("chai.ktq_sensitivity").methods, ", ")), 0)
    end
  end
  if o.parts ~= nil then
    if type(o.parts) ~= "table" or #o.parts == 0 then error(where .. ".parts must be a non-empty list", 0) end
    for i, p in ipairs(o.parts) do
      if p ~= "attention" and p ~= "ffn" and p ~= "norms" then
        error(("%s.parts[%d] = %s (known: attention, ffn, norms)"):format(where, i, tostring(p)), 0)
      end
    end
  end
end

--- The selection for a model: {layers=, sensitivity = result or nil, fraction=}; o = the target
--- step's options (defaults: fraction 0.3, sensitivity "fisher" on the sensitivity slice).
function M.select(model, ctx, o)
  if o.layers then return {layers = o.layers, fraction = nil, given = true} end
  local sens = o.sensitivity or "fisher"
  if type(sens) == "string" then
    local so = {method = sens, seed = ctx.seed}
    for k, v in pairs(o.sensitivity_opts or {}) do so[k] = v end
    local ds = nil
    if not (sens == "chai-ktq" and (so.input or "random") == "random") then ds = ctx:slices("target").sensitivity end
    sens = require("chai.ktq_sensitivity").sensitivity(model, ds, so)
  end
  if #sens.scores ~= model.config.num_hidden_layers then
    error(("the sensitivity scores have %d layers, the model %d"):format(#sens.scores, model.config.num_hidden_layers), 0)
  end
  local fraction = o.fraction or 0.3
  return {layers = (tiers.top(sens.scores, fraction)), fraction = fraction, sensitivity = sens}
end

-- ---------------------------------------------------------------------------------------------
-- target

local TARGET_DEFAULTS = {steps = 400, batch_size = 32, lr = 1e-4, weight_decay = 0.01,
                         eval_every = 50, patience = 4}
M.target_defaults = TARGET_DEFAULTS

M.checks.target = function(o, model)
  local known = {}
  for k in pairs(TRAIN_KNOWN) do known[k] = true end
  for k in pairs(SELECT_KNOWN) do known[k] = true end
  util.check_opts("target", o, known)
  check_selection("target", o, model)
  check_training("target", o)
end

M.steps.target = function(model, ctx, o)
  need_classify(ctx, "target")
  local sel = ctx:selection(model, o)
  local names = names_for(model, sel.layers, o.head ~= false, o.parts or {"attention", "ffn", "norms"})
  if #names == 0 then error("no trainable parameter in the selected layers (all frozen)", 0) end
  local fit = with_trainable(model, names, function()
    return fit_model(model, ctx, "target", o, TARGET_DEFAULTS, {})
  end)
  local sens = sel.sensitivity
  return model, {what = ("fine-tuned layers %s%s (%d tensors), the rest frozen"):format(
                   table.concat(sel.layers, ", "), o.head ~= false and " and the head" or "", #names),
                 layers = sel.layers, fraction = sel.fraction, trained = names,
                 params_trained = values_of(model, names),
                 sensitivity = sens and {method = sens.method, scores = sens.scores} or nil,
                 training = fit}
end

-- ---------------------------------------------------------------------------------------------
-- kd

local KD_DEFAULTS = {steps = 400, batch_size = 32, lr = 1e-4, weight_decay = 0.01, eval_every = 50,
                     patience = 4}
M.kd_defaults = KD_DEFAULTS

M.checks.kd = function(o, model)
  local known = {alpha = true, T = true, teacher = true, drop_layers = true}
  for k in pairs(TRAIN_KNOWN) do known[k] = true end
  util.check_opts("kd", o, known)
  if o.alpha ~= nil then check_range("kd.alpha", o.alpha, 0, 1) end
  if o.T ~= nil then check_range("kd.T", o.T, 0, math.huge, true, true) end
  check_training("kd", o)
  local L = model.config.num_hidden_layers
  if o.drop_layers ~= nil then
    if type(o.drop_layers) ~= "table" then error("kd.drop_layers must be a list of layers", 0) end
    local seen = {}
    for i, l in ipairs(o.drop_layers) do
      if math.type(l) ~= "integer" or l < 1 or l > L then
        error(("kd.drop_layers[%d] = %s is not a layer 1..%d"):format(i, tostring(l), L), 0)
      end
      if seen[l] then error(("kd.drop_layers lists layer %d twice"):format(l), 0) end
      seen[l] = true
    end
    if #o.drop_layers >= L then error(("kd.drop_layers removes all %d layers"):format(L), 0) end
  end
  if o.teacher ~= nil then M.check_teacher(o.teacher, model) end
end

--- Raises unless `teacher` is a model that can teach `student`: same vocabulary, same labels.
function M.check_teacher(teacher, student)
  if type(teacher) ~= "userdata" or not pcall(function() return teacher.config end) then
    error("kd.teacher must be a chai.Model, got " .. type(teacher), 0)
  end
  local tc, sc = teacher.config, student.config
  if tc.vocab_size ~= sc.vocab_size then
    error(("kd.teacher has vocab_size %s, the student %s: a teacher must share the student's "
           .. "vocabulary"):format(tostring(tc.vocab_size), tostring(sc.vocab_size)), 0)
  end
  if (tc.num_labels or 2) ~= (sc.num_labels or 2) then
    error(("kd.teacher has num_labels %s, the student %s"):format(tostring(tc.num_labels), tostring(sc.num_labels)), 0)
  end
end

--- A model with the decoder layers of `model` except `drop` (1-based), every other weight
--- copied; a head plan moves with its layers. Pruned models keep their per-layer head counts.
function M.drop_layers(model, drop)
  local gone = {}
  for _, l in ipairs(drop) do gone[l] = true end
  local cfg = {}
  for k, v in pairs(model.config) do cfg[k] = v end
  local L = cfg.num_hidden_layers
  local map, kept = {}, 0 -- old layer (1-based) -> new layer
  for l = 1, L do
    if not gone[l] then kept = kept + 1; map[l] = kept end
  end
  cfg.num_hidden_layers = kept
  if type(cfg.chai_attention_heads) == "table" then
    local hs = {}
    for l = 1, L do if map[l] then hs[map[l]] = cfg.chai_attention_heads[l] end end
    cfg.chai_attention_heads = hs
  end
  local out = opt.create(cfg, {dtype = model:dtype(), seed = 0})
  local src = model:params()
  for name, p in pairs(out:params()) do
    local from = name
    local l = util.layer_of(name)
    if l then
      for old, new in pairs(map) do
        if new == l then from = name:gsub("%.layers%.%d+%.", ".layers." .. (old - 1) .. ".", 1) end
      end
    end
    p:copy(src[from])
  end
  local h = model:heads()
  if h.plan then
    local layers = {}
    for _, e in ipairs(h.plan.layers) do
      if map[e.layer] then layers[#layers + 1] = {layer = map[e.layer], clusters = e.clusters, k = e.k} end
    end
    if #layers > 0 then out:set_heads({layers = layers}, {mode = h.mode}) end
  end
  return out, map
end

M.steps.kd = function(model, ctx, o)
  need_classify(ctx, "kd")
  local teacher = o.teacher or ctx:original()
  M.check_teacher(teacher, model)
  local student, dropped = model, nil
  if o.drop_layers and #o.drop_layers > 0 then
    student = M.drop_layers(model, o.drop_layers)
    dropped = o.drop_layers
  end
  local names
  local sel = nil
  if ctx:has_step("target") then
    sel = ctx:selection(student, ctx.recipe.target or {})
    local to = ctx.recipe.target or {}
    names = names_for(student, sel.layers, to.head ~= false, to.parts or {"attention", "ffn", "norms"})
  else
    names = util.trainable(student)
  end
  if #names == 0 then error("no trainable parameter (all frozen)", 0) end
  local T, alpha = o.T or 2.0, o.alpha or 0.5
  local t_annotate = 0
  local fit = with_trainable(student, names, function()
    return fit_model(student, ctx, "kd", o, KD_DEFAULTS, {
      run = {teacher = "rows", T = T, alpha = alpha},
      annotate = function(rows)
        -- Teacher logits once for the rows the run will see, reused by every epoch.
        local t0 = require("chai.core").bench.now()
        local copy = {}
        for i, r in ipairs(rows) do copy[i] = {ids = r.ids, label = r.label} end
        train.annotate(copy, teacher)
        t_annotate = require("chai.core").bench.now() - t0
        return copy
      end})
  end)
  local what = ("distilled %s (T = %g, alpha = %g) into %s"):format(
    o.teacher and "the given teacher" or "the unmodified model", T, alpha,
    sel and ("layers " .. table.concat(sel.layers, ", ") .. (ctx.recipe.target and ctx.recipe.target.head == false and "" or " and the head"))
      or ("all %d trainable tensors"):format(#names))
  if dropped then what = what .. (", a student without layers %s"):format(table.concat(dropped, ", ")) end
  return student, {what = what, T = T, alpha = alpha, teacher = o.teacher and "given" or "unmodified model",
                   trained = names, params_trained = values_of(student, names),
                   layers = sel and sel.layers or nil, dropped_layers = dropped,
                   layers_after = student.config.num_hidden_layers,
                   sensitivity = sel and sel.sensitivity and {method = sel.sensitivity.method, scores = sel.sensitivity.scores} or nil,
                   teacher_seconds = t_annotate, training = fit}
end

-- ---------------------------------------------------------------------------------------------
-- head: the classification head alone (a pretrained LM's random score head)

local HEAD_DEFAULTS = {steps = 300, batch_size = 32, lr = 1e-3, weight_decay = 0.0, eval_every = 50,
                       patience = 4}
M.head_defaults = HEAD_DEFAULTS

M.checks.head = function(o)
  util.check_opts("head", o, TRAIN_KNOWN)
  check_training("head", o)
end

M.steps.head = function(model, ctx, o)
  need_classify(ctx, "head")
  local was_random = util.score_random(model)
  local names = {"score.weight"}
  local fit = with_trainable(model, names, function()
    return fit_model(model, ctx, "head", o, HEAD_DEFAULTS, {})
  end)
  model:score_random(false)
  return model, {what = "trained the classification head alone (score.weight), the rest frozen",
                 was_random = was_random, trained = names, params_trained = values_of(model, names),
                 training = fit}
end

return M
