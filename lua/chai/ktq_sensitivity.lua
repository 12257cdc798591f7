-- chai.ktq.sensitivity: a score per decoder layer, higher = more sensitive, by one of four methods.
-- The heavy parts run in C: the attention statistics are summed inside the captured forward
-- (engine/src/heads/stats.c), gradients come from the model's backward and their squares are summed
-- by chai.core.grad_norm, and the perturbation method's losses are plain forwards.
--
--   "chai-ktq"  the CHAI-KTQ project's rule: the mean of the attention probabilities of each layer
--               over (batch, head, query, key), on one random input of 32 tokens by default (its
--               torch.randint(0, 50256, (1, 32))). Every causal softmax row sums to one, so the mean
--               is 1/T in every layer and the ranking is decided by rounding (docs/ktq.md).
--   "perturb"   loss(layer l alone perturbed) − loss(model), on the data; kinds in
--               M.perturbations ("cluster": layer l alone clustered at its elbow k; "int8", "int4",
--               "bf16": layer l alone quantized to that format).
--   "fisher"    the empirical Fisher information of each layer's weights: Σ over batches of the
--               squared gradient of every weight of the layer, divided by the layer's weight
--               count (per parameter). batch_size 1 (default) squares per-example gradients.
--   "entropy"   the mean attention entropy of the layer (nats, over heads and real query rows).
local core = require "chai.core"
local json = core.json
local data = require "chai.data"
local heads = require "chai.heads"
local task_mod = require "chai.ktq_task"
local util = require "chai.ktq_model"

local M = {}

M.methods = {"chai-ktq", "entropy", "fisher", "perturb"}

-- ---------------------------------------------------------------------------------------------
-- Perturbation kinds for "perturb": name → {prepare = function(model, p) (optional, once),
-- apply = function(model, layer, p) → the model to evaluate, restore()}. p holds the data set
-- (p.data), its task (p.task), the options (p.opts) and whatever prepare stored.

M.perturbations = {}

M.perturbations.cluster = {
  prepare = function(model, p)
    if model:heads().plan then
      error("chai.ktq.sensitivity: perturb kind \"cluster\" needs a dense model (this one already "
            .. "has a head plan); score the layers before the chai step, or use another kind", 0)
    end
    local tokens = p.opts.tokens or 32
    local stats = heads.calibrate(model, nil, p.task:id_lists(p.data, tokens), {tokens = tokens})
    local L, H = model.config.num_hidden_layers, model.config.num_attention_heads
    local override = nil
    if p.opts.k then
      if math.type(p.opts.k) ~= "integer" or p.opts.k < 1 or p.opts.k >= H then
        error(("chai.ktq.sensitivity: k must be an integer in 1..%d (fewer clusters than heads), got %s"):format(H - 1, tostring(p.opts.k)), 0)
      end
      override = {}
      for l = 1, L do override[l] = p.opts.k end
    end
    local plan = heads.plan(stats, {seed = p.seed, override = override})
    p.entries, p.k = {}, {}
    for _, e in ipairs(plan.layers) do p.entries[e.layer] = e end
    for _, info in ipairs(plan.meta.layers or {}) do p.k[info.layer] = info.k end
  end,
  apply = function(model, layer, p)
    local e = p.entries[layer]
    if not e then return model, function() end end -- the elbow keeps this layer dense
    model:set_heads({layers = {e}})
    return model, function() model:set_heads(nil) end
  end,
}

-- "int8", "int4", "bf16": layer l alone quantized to that format (its six matrices; group
-- opts.group or 64, opts.quant_method "rtn"|"mse"), on a copy of the model, the others untouched.
local function quantized_layer(format)
  return {
    apply = function(model, layer, p)
      local c = util.clone(model)
      c:quantize{layers = {[layer] = format}, group = p.opts.group, method = p.opts.quant_method}
      return c, function() c:free() end
    end,
  }
end
M.perturbations.int8 = quantized_layer("int8")
M.perturbations.int4 = quantized_layer("int4")
M.perturbations.bf16 = quantized_layer("bf16")

-- ---------------------------------------------------------------------------------------------

local KNOWN = {method = true, group = true, quant_method = true, batches = true, batch_size = true, samples = true, tokens = true,
               kind = true, k = true, seed = true, input = true, out = true}

-- Runs fn with the model's head plan removed (attention statistics need dense attention), then
-- puts the plan back.
local function dense_while(model, fn)
  local h = model:heads()
  if h.plan then model:set_heads(nil) end
  local ok, res = pcall(fn)
  if h.plan then model:set_heads(h.plan, {mode = h.mode}) end
  if not ok then error(res, 0) end
  return res
end

local function check_not_pruned(model, method)
  for l, n in ipairs(heads.layer_heads(model)) do
    if n ~= model.config.num_attention_heads then
      error(("chai.ktq.sensitivity: method %q reads attention statistics, which a pruned model "
             .. "(layer %d has %d heads) does not keep; score before pruning"):format(method, l, n), 0)
    end
  end
end

-- Attention statistics over id lists (one forward each, batch 1) → per layer
-- {entropy=, max_entropy=, prob=, per_head = {...}} (means over the counted rows or cells).
local function attention_stats(model, id_lists, tokens)
  local longest = 2
  for _, ids in ipairs(id_lists) do longest = math.max(longest, #ids) end
  longest = math.min(longest, tokens)
  local C = core.heads
  local raw = dense_while(model, function()
    C.capture_begin(model, longest)
    local ok, res = pcall(function()
      for _, ids in ipairs(id_lists) do
        if #ids > longest then ids = {table.unpack(ids, 1, longest)} end
        model:forward({ids}, {last_only = true})
      end
      return C.capture_stats(model)
    end)
    C.capture_end(model)
    if not ok then error(res, 0) end
    return res
  end)
  local out = {}
  for l, hs in ipairs(raw) do
    local e, me, ps, rows, cells = 0, 0, 0, 0, 0
    local per_head = {}
    for h, s in ipairs(hs) do
      e, me, ps = e + s.entropy, me + s.max_entropy, ps + s.prob_sum
      rows, cells = rows + s.rows, cells + s.cells
      per_head[h] = {entropy = s.rows > 0 and s.entropy / s.rows or 0,
                     prob = s.cells > 0 and s.prob_sum / s.cells or 0}
    end
    out[l] = {entropy = rows > 0 and e / rows or 0, max_entropy = rows > 0 and me / rows or 0,
              prob = cells > 0 and ps / cells or 0, per_head = per_head, rows = rows, cells = cells}
  end
  return out
end

local function method_chai_ktq(model, ds, task, opts)
  check_not_pruned(model, "chai-ktq")
  local input = opts.input or "random"
  local tokens = opts.tokens or 32
  local lists
  if input == "random" then
    -- The project's input: torch.randint(0, 50256, (1, 32)), one row, no BOS; here from the seed.
    local rng = data.rng(opts.seed or 0)
    local hi = math.min(model.config.vocab_size, 50256)
    local ids = {}
    for i = 1, tokens do ids[i] = rng(hi) - 1 end
    lists = {ids}
  elseif input == "data" then
    if not ds then error("chai.ktq.sensitivity: input \"data\" needs a data set", 0) end
    lists = task:id_lists(ds, tokens)
  else
    error(("chai.ktq.sensitivity: input must be \"random\" or \"data\", got %s"):format(tostring(input)), 0)
  end
  local st = attention_stats(model, lists, tokens)
  local scores, per_head = {}, {}
  for l, s in ipairs(st) do
    scores[l] = s.prob
    per_head[l] = {}
    for h, x in ipairs(s.per_head) do per_head[l][h] = x.prob end
  end
  return scores, {input = input, tokens = tokens, samples = #lists, per_head = per_head,
                  note = "each causal softmax row sums to 1, so every layer's mean is 1/T up to rounding"}
end

local function method_entropy(model, ds, task, opts)
  check_not_pruned(model, "entropy")
  local tokens = opts.tokens or task.max_length
  local st = attention_stats(model, task:id_lists(ds, tokens), tokens)
  local scores, maxe, norm, per_head = {}, {}, {}, {}
  for l, s in ipairs(st) do
    scores[l] = s.entropy
    maxe[l] = s.max_entropy
    norm[l] = s.max_entropy > 0 and s.entropy / s.max_entropy or 0
    per_head[l] = {}
    for h, x in ipairs(s.per_head) do per_head[l][h] = x.entropy end
  end
  return scores, {entropy = scores, max_entropy = maxe, normalized = norm, per_head = per_head,
                  tokens = tokens, rows = st[1] and st[1].rows // #st[1].per_head or 0}
end

local function batches_of(rows, bs, count)
  local out = {}
  for i = 1, #rows, bs do
    if count and #out >= count then break end
    local b = {}
    for j = i, math.min(i + bs - 1, #rows) do b[#b + 1] = rows[j] end
    out[#out + 1] = b
  end
  return out
end

local function collate(batch, pad)
  local T = 1
  for _, r in ipairs(batch) do T = math.max(T, #r.ids) end
  local ids, mask, labels = {}, {}, {}
  for b, r in ipairs(batch) do
    ids[b], mask[b] = {}, {}
    for t = 1, T do
      ids[b][t] = r.ids[t] or pad
      mask[b][t] = r.ids[t] and 1 or 0
    end
    labels[b] = r.label
  end
  return core.tensor(ids, "i32"), core.tensor(mask, "i32"), labels
end

local function method_fisher(model, ds, task, opts)
  local rows = task:encode(ds)
  local bs = opts.batch_size or 1
  util.check_count("chai.ktq.sensitivity: batch_size", bs)
  local batches = batches_of(rows, bs, opts.batches)
  local L = model.config.num_hidden_layers
  local keep = util.trainable(model)
  local head = task.kind == "zeroshot" and "lm" or "classify"
  local pad = model.config.pad_token_id or 1
  local sums, counts, parts = {}, {}, {}
  for l = 1, L do sums[l], counts[l], parts[l] = 0, 0, {} end
  local layers = {}
  for l = 1, L do layers[l] = l end
  local ok, err = pcall(function()
    model:freeze()
    model:unfreeze{layers = layers}
    local groups -- per layer and part: {name = grad view}
    local params = model:params()
    for _, batch in ipairs(batches) do
      model:zero_grad()
      local ids, mask, labels = collate(batch, pad)
      model:forward_backward{input_ids = ids, attention_mask = mask, head = head,
                             labels = head == "classify" and labels or nil}
      if not groups then
        groups = {}
        for name, g in pairs(model:grads()) do
          local l = util.layer_of(name)
          if l then
            local part = name:match("self_attn%.") and "attention" or name:match("%.fc%d") and "ffn" or "norms"
            groups[l] = groups[l] or {}
            groups[l][part] = groups[l][part] or {}
            groups[l][part][name] = g
            counts[l] = counts[l] + params[name]:numel()
          end
        end
      end
      for l = 1, L do
        for part, g in pairs(groups[l] or {}) do
          local norm = core.grad_norm(g)
          sums[l] = sums[l] + norm * norm
          parts[l][part] = (parts[l][part] or 0) + norm * norm
        end
      end
    end
  end)
  model:zero_grad()
  model:release_training()
  util.set_trainable(model, keep)
  if not ok then error(err, 0) end
  local scores = {}
  for l = 1, L do scores[l] = counts[l] > 0 and sums[l] / counts[l] or 0 end
  return scores, {sum_squares = sums, weights = counts, parts = parts, batches = #batches,
                  batch_size = bs, per_example = bs == 1}
end

local function method_perturb(model, ds, task, opts)
  local kind = opts.kind or "cluster"
  local pk = M.perturbations[kind]
  if not pk then
    local names = {}
    for n in pairs(M.perturbations) do names[#names + 1] = n end
    table.sort(names)
    error(("chai.ktq.sensitivity: perturbation kind %q is not available (known: %s)"):format(tostring(kind), table.concat(names, ", ")), 0)
  end
  local rows = task:encode(ds)
  if opts.batches then
    local keep = {}
    for i = 1, math.min(#rows, opts.batches * (opts.batch_size or 64)) do keep[i] = rows[i] end
    rows = keep
  end
  local p = {data = ds, task = task, opts = opts, seed = opts.seed or 0}
  if pk.prepare then pk.prepare(model, p) end
  local base = util.evaluate(model, rows, task.kind)
  local L = model.config.num_hidden_layers
  local scores, layers = {}, {}
  for l = 1, L do
    local pm, restore = pk.apply(model, l, p)
    local ok, r = pcall(util.evaluate, pm, rows, task.kind)
    restore()
    if not ok then error(r, 0) end
    scores[l] = r.loss - base.loss
    layers[l] = {loss = r.loss, accuracy = r.accuracy, delta_loss = r.loss - base.loss,
                 delta_accuracy = r.accuracy and base.accuracy and r.accuracy - base.accuracy or nil,
                 k = p.k and p.k[l] or nil}
  end
  return scores, {kind = kind, base = {loss = base.loss, accuracy = base.accuracy}, layers = layers,
                  rows = #rows}
end

local RUN = {["chai-ktq"] = method_chai_ktq, entropy = method_entropy, fisher = method_fisher,
             perturb = method_perturb}

--- Scores per layer (1-based) of `model` on `data`: {method=, scores={…}, details={…}, layers=,
--- samples=, seconds=, seed=}. data: a slice of a task's train split (chai.ktq task:slices), a
--- task (its sensitivity slice for the seed), or nil for "chai-ktq" on random input. opts: method
--- ("fisher" default; see above), batches (cap on batches: fisher, perturb), batch_size (fisher
--- [1], perturb's evaluation [64]), samples (cap on rows), tokens (attention methods: tokens per
--- row; chai-ktq's random input length [32]), kind (perturb ["cluster"]), k (perturb cluster: one
--- k for every layer instead of each layer's elbow), seed [0], input ("random" | "data", chai-ktq
--- ["random"]), out (a JSON file to write the result to).
function M.sensitivity(model, ds, opts)
  local fname = "chai.ktq.sensitivity"
  opts = util.check_opts(fname, opts, KNOWN)
  local method = opts.method or "fisher"
  local run = RUN[method]
  if not run then
    error(("%s: unknown method %q (known: %s)"):format(fname, tostring(method), table.concat(M.methods, ", ")), 2)
  end
  local task
  if task_mod.is_task(ds) then
    task = ds
    ds = task:slices({seed = opts.seed}).sensitivity
  elseif ds ~= nil then
    if not task_mod.is_dataset(ds) then
      error(fname .. ": data must be a data set of a chai.ktq task (task.train or a slice of it) or a task", 2)
    end
    task_mod.check_train_data(ds.owner, ds, "the sensitivity data")
    task = ds.owner
  elseif not (method == "chai-ktq" and (opts.input or "random") == "random") then
    error(("%s: method %q needs data (a slice of the train split)"):format(fname, method), 2)
  end
  if ds and opts.samples then
    util.check_count(fname .. ": samples", opts.samples)
    local keep = {}
    for i = 1, math.min(opts.samples, #ds.rows) do keep[i] = ds.rows[i] end
    ds = task_mod.user_dataset(task, keep, ds.purpose)
  end
  if opts.tokens ~= nil and (math.type(opts.tokens) ~= "integer" or opts.tokens < 2) then
    error(fname .. ": tokens must be an integer >= 2, got " .. tostring(opts.tokens), 2)
  end
  if opts.batches ~= nil then util.check_count(fname .. ": batches", opts.batches) end
  local t0 = core.bench.now()
  local ok, scores, details = pcall(run, model, ds, task, opts)
  if not ok then error(scores, 2) end
  local res = {method = method, scores = scores, details = details,
               layers = model.config.num_hidden_layers, samples = ds and #ds.rows or nil,
               seconds = core.bench.now() - t0, seed = opts.seed or 0}
  if opts.out then M.save(res, opts.out) end
  return res
end

--- Writes a sensitivity result as JSON (lists in layer order: the first entry is layer 1, the
--- engine's layer 0).
function M.save(res, path)
  local f, err = io.open(path, "wb")
  if not f then error("chai.ktq.sensitivity: cannot write '" .. path .. "': " .. tostring(err), 2) end
  f:write(json.encode(res, {indent = true}), "\n")
  f:close()
  return path
end

return M
