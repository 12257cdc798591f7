-- chai.heads: CHAI head clustering from Lua. Plans are 1-based here (layers, heads, clusters) and
-- 0-based in files; the C side (chai.core.heads) converts, validates and computes.
--
--   plan = {layers = {{layer = 1, clusters = {{1, 4, 6}, {2}, {3, 5}}, k = 3}, ...}, meta = {...}}
--
-- The first head of each cluster is its representative; a layer absent from plan.layers is dense.
local core = require "chai.core"
local C = core.heads
local json = core.json

local M = {}

local function check_opts(fname, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(fname .. ": options must be a table, got " .. type(opts), 3) end
  for key in pairs(opts) do
    if not known[key] then error(("%s: unknown option %s"):format(fname, tostring(key)), 3) end
  end
  return opts
end

local function attach_meta(plan, meta_text)
  if meta_text then plan.meta = json.decode(meta_text) end
  return plan
end

-- Reads a plan file (0-based JSON) into the 1-based Lua structure; refuses a malformed plan with
-- the reason. dims = {layers=, heads=} also checks the plan against a model's shape.
function M.load_plan(path, dims)
  if type(path) ~= "string" then error("chai.heads.load_plan: path must be a string", 2) end
  return attach_meta(C.load(path, dims))
end

-- Parses plan JSON text (0-based) like load_plan.
function M.parse_plan(text, dims)
  return attach_meta(C.parse(text, dims))
end

-- The 0-based JSON text of a (1-based) plan; plan.meta, when present, is written as "meta".
function M.plan_json(plan)
  if type(plan) ~= "table" then error("chai.heads.save_plan: plan must be a table", 2) end
  local meta = plan.meta ~= nil and json.encode(plan.meta) or nil
  return C.to_json(plan, meta)
end

-- Writes a plan file (0-based JSON).
function M.save_plan(plan, path)
  if type(path) ~= "string" then error("chai.heads.save_plan: path must be a string", 2) end
  local text = M.plan_json(plan)
  local f, err = io.open(path, "wb")
  if not f then error("chai.heads.save_plan: cannot write " .. path .. ": " .. tostring(err), 2) end
  f:write(text)
  f:close()
  return path
end

-- Checks a plan against {layers=, heads=} (either may be omitted) and returns its normalised
-- copy (layers sorted, k filled in); raises with the reason (1-based numbers) otherwise.
function M.validate(plan, dims)
  local out = C.validate(plan, dims)
  out.meta = plan.meta
  return out
end

-- k-means on the rows of a matrix (a chai.Tensor or nested table) → labels (cluster 1..k per row),
-- inertia, centres. opts: seed (0), n_init (4), max_iter (300).
function M.kmeans(rows, k, opts) return C.kmeans(rows, k, opts) end

-- Sum over samples of the k-means inertia of each sample's H rows, for k = 1..H.
function M.inertia_curve(samples, opts) return C.inertia_curve(samples, opts) end

-- The elbow of a decreasing inertia curve: k and the rule that chose it ("kneedle", or "chord"
-- when kneedle finds no knee). opts.sensitivity: kneedle's S (default 1.0).
function M.elbow(inertias, opts) return C.elbow(inertias, opts) end

M.kneedle = C.kneedle
M.cosine_distance = C.cosine_distance
M.kmeans_samples = C.kmeans_samples

-- Average-linkage agglomerative clustering of a precomputed distance matrix into k clusters →
-- labels 1..k numbered by lowest member (representative = lowest-index head).
function M.agglomerative(dist, k) return C.agglomerative(dist, k) end

-- The CHAI-KTQ project's rule on one layer's per-head mean attention → labels, k.
function M.ktq_rule(mean_attention, opts) return C.ktq_rule(mean_attention, opts) end

-- A plan layer entry from labels (any positive numbering): clusters ordered by lowest member.
function M.from_labels(layer, labels) return C.from_labels(layer, labels) end

local plan_known = {method = true, sensitivity = true, override = true, skip_layers = true,
                    min_layer = true, seed = true, n_init = true, max_iter = true}

-- A plan from calibration statistics (see M.calibrate for the format):
--   method = "kmeans-elbow" (default): per layer, the inertia curve summed over samples for
--     k = 1..H, its elbow (kneedle, `sensitivity`, default 1.0; chord fallback), then one static
--     membership from k-means with that k on each head's rows concatenated over samples;
--   method = "chai-ktq": the CHAI-KTQ project's rule on the per-layer mean attention.
-- override = {[layer] = k} forces k; skip_layers = {layers...} or min_layer = l (layers below l)
-- stay dense; a layer whose k equals H stays dense too. seed, n_init, max_iter go to k-means.
-- plan.meta records the method, options and each layer's curve and elbow.
function M.plan(stats, opts)
  opts = check_opts("chai.heads.plan", opts, plan_known)
  if type(stats) ~= "table" or type(stats.layers) ~= "table" then
    error("chai.heads.plan: stats must be a table with stats.layers (from chai.heads.calibrate)", 2)
  end
  local method = opts.method or "kmeans-elbow"
  if method ~= "kmeans-elbow" and method ~= "chai-ktq" then
    error(("chai.heads.plan: unknown method %q (expected \"kmeans-elbow\" or \"chai-ktq\")"):format(tostring(method)), 2)
  end
  local S = opts.sensitivity or 1.0
  local kopts = {seed = opts.seed or 0, n_init = opts.n_init, max_iter = opts.max_iter}
  local skip = {}
  for _, l in ipairs(opts.skip_layers or {}) do skip[l] = true end
  local override = opts.override or {}
  local n_layers = stats.n_layers or #stats.layers
  local plan = {layers = {}, meta = {method = method, sensitivity = S, seed = kopts.seed,
                                     tokens = stats.tokens, samples = stats.n_samples,
                                     layers = {}}}
  if opts.min_layer then plan.meta.min_layer = opts.min_layer end
  for l = 1, n_layers do
    local st = stats.layers[l]
    if st == nil then error(("chai.heads.plan: stats.layers[%d] is missing"):format(l), 2) end
    local dense = skip[l] or (opts.min_layer and l < opts.min_layer)
    if not dense then
      local info = {layer = l}
      local labels, k
      if method == "chai-ktq" then
        if type(st.mean) ~= "table" then
          error(("chai.heads.plan: stats.layers[%d].mean (per-head mean attention) is missing"):format(l), 2)
        end
        labels, k = C.ktq_rule(st.mean, {sensitivity = S, seed = kopts.seed, n_init = kopts.n_init,
                                         max_iter = kopts.max_iter})
        info.k = k
        if override[l] then
          k = override[l]
          local H = #st.mean
          if math.type(k) ~= "integer" or k < 1 or k > H then
            error(("chai.heads.plan: k for layer %d must be an integer in 1..%d, got %s"):format(l, H, tostring(k)), 2)
          end
          local rows = {}
          for h, v in ipairs(st.mean) do rows[h] = {v} end
          labels = C.kmeans(rows, k, kopts)
        end
      else
        if st.rows == nil then
          error(("chai.heads.plan: stats.layers[%d].rows (per-sample attention rows) is missing"):format(l), 2)
        end
        local curve = C.inertia_curve(st.rows, kopts)
        local elbow, rule = C.elbow(curve, {sensitivity = S})
        info.inertia, info.elbow, info.rule = curve, elbow, rule
        k = override[l] or elbow
        local H = #curve
        if math.type(k) ~= "integer" or k < 1 or k > H then
          error(("chai.heads.plan: k for layer %d must be an integer in 1..%d, got %s"):format(l, H, tostring(k)), 2)
        end
        if k < H then labels = C.kmeans_samples(st.rows, k, kopts) end
      end
      info.k = k
      plan.meta.layers[#plan.meta.layers + 1] = info
      if labels and k < #labels then
        plan.layers[#plan.layers + 1] = C.from_labels(l, labels)
      end
    end
  end
  if #plan.meta.layers == 0 then plan.meta.layers = nil end
  return plan
end

-- Structural pruning: a new, smaller model keeping the first `keep` heads (default 1) of every
-- cluster of the plan (representative first), sliced from the real weights; it saves and loads as
-- a chai checkpoint (per-layer head counts in config.json as "chai_attention_heads").
function M.prune(model, plan, opts) return C.prune(model, plan, opts) end

-- Heads per layer of a model ({12, 12, ...}; fewer in a pruned model).
function M.layer_heads(model) return C.layer_heads(model) end

local calib_known = {tokens = true, max_samples = true}

-- Attention statistics for chai.heads.plan, streamed one text at a time (memory: the statistics
-- themselves, samples × layers × heads × tokens floats, plus one forward of `tokens` tokens).
-- Each text is tokenized (tok:encode) and cut to its first `tokens` ids (default 32, as the
-- paper's dumps); one dense forward records, per layer and head, the attention probabilities of the
-- LAST of those tokens over all of them (zero-padded to `tokens` when the text is shorter; zero
-- columns shared by all heads change no k-means inertia). Texts with fewer than 2 tokens are
-- skipped; a text may also come tokenized (a list of token ids; tok is then not used).
-- max_samples caps the number of texts used (default: all).
-- Returns {n_layers=, n_heads=, tokens=, n_samples=, layers={[l]={rows=(S,H,tokens) tensor,
-- mean={per-head mean of those rows over samples}}}}. The model must be dense (set_heads(nil)).
-- Note: a softmax row sums to 1, so each head's mean over it is 1/T for every head: the seed
-- project's "mean attention" feature carries no information (see docs/heads.md).
function M.calibrate(model, tok, texts, opts)
  opts = check_opts("chai.heads.calibrate", opts, calib_known)
  if type(texts) ~= "table" then error("chai.heads.calibrate: texts must be a list of strings", 2) end
  local N = opts.tokens or 32
  if math.type(N) ~= "integer" or N < 2 then
    error("chai.heads.calibrate: tokens must be an integer >= 2, got " .. tostring(N), 2)
  end
  local max = opts.max_samples or #texts
  local cfg = model.config
  local L, H = cfg.num_hidden_layers, cfg.num_attention_heads
  local chosen = {}
  for _, text in ipairs(texts) do
    if #chosen >= max then break end
    local ids
    if type(text) == "table" then
      ids = text
    elseif type(text) == "string" then
      ids = tok:encode(text)
    else
      error("chai.heads.calibrate: texts must be strings (or lists of token ids)", 2)
    end
    if #ids >= 2 then
      local cut = {}
      for i = 1, math.min(N, #ids) do cut[i] = ids[i] end
      chosen[#chosen + 1] = cut
    end
  end
  if #chosen == 0 then error("chai.heads.calibrate: no text has 2 or more tokens", 2) end
  local S = #chosen
  local core_chai = require "chai"
  local rows, means = {}, {}
  for l = 1, L do
    rows[l] = core_chai.zeros({S, H, N})
    means[l] = {}
    for h = 1, H do means[l][h] = 0 end
  end
  C.capture_begin(model, N)
  local ok, err = pcall(function()
    for s, ids in ipairs(chosen) do
      model:forward({ids})
      C.capture_store(model, rows, s, means)
    end
  end)
  C.capture_end(model)
  if not ok then error(err, 2) end
  local stats = {n_layers = L, n_heads = H, tokens = N, n_samples = S, layers = {}}
  for l = 1, L do
    for h = 1, H do means[l][h] = means[l][h] / S end
    stats.layers[l] = {rows = rows[l], mean = means[l]}
  end
  return stats
end

return M
