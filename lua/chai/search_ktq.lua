-- The search's backend on chai.ktq (the interface is in lua/chai/search.lua): it loads the model
-- (or trains the default one), builds the task, checks recipes, scores layer sensitivity, and
-- builds and measures each configuration with chai.ktq.apply and chai.ktq.measure. The one place
-- the search touches models.
local core = require "chai.core"
local json = core.json
local store = require "chai.search_store"
local args_mod = require "chai.search_args"

local M = {}

local function ktq() return require "chai.ktq" end
local fail = args_mod.fail
local PROG = args_mod.prog

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end

--- --quick: slices of at most this many train rows, fewer training steps, and measurements on the
--- first dev rows with one repeat. A full search times batch-1 latency on the first 300 dev
--- sentences (three repeats each, interleaved with the unmodified model: 1,800 timed forwards, enough
--- for p99, and half the measuring time of all 872); accuracy and throughput use every row.
M.quick_slices = {calibration = 32, sensitivity = 32, heldout = 64}
M.quick_steps = {target = {steps = 20, eval_every = 10}, kd = {steps = 20, eval_every = 10}}
M.measure = {full = {repeats = 3, latency_rows = 300}, quick = {repeats = 1, limit = 200, latency_rows = 50, bootstrap = 500}}

--- The chai.ktq recipes' defaults for each step (those of chai_ktq, which has them all).
function M.defaults()
  local r = ktq().recipes.chai_ktq
  return {chai = copy(r.chai), quant = copy(r.quant), target = copy(r.target), kd = copy(r.kd)}
end

-- ---------------------------------------------------------------------------------------------
-- The model

local HUB_ID = "^[%w][%w._-]*/[%w._-]+$"

-- A --model value checked: an OPT model folder (its absolute path), or a Hub id. Raises a failure
-- naming the value for a folder that is missing or not an OPT model.
local function check_model(spec)
  if store.is_dir(spec) then
    local text = store.read_all(spec .. "/config.json")
    if not text then
      fail(("%s: --model %s: the folder has no config.json, so it is not a model folder"):format(PROG, spec), 1)
    end
    local ok, cfg = pcall(json.decode, text)
    if not ok or type(cfg) ~= "table" then
      fail(("%s: --model %s: config.json is not JSON (%s)"):format(PROG, spec, tostring(cfg)), 1)
    end
    if cfg.model_type ~= "opt" then
      fail(("%s: --model %s: not an OPT model (config.json says model_type %s); chai runs OPT models"):format(
        PROG, spec, cfg.model_type == nil and "nothing" or ("'" .. tostring(cfg.model_type) .. "'")), 1)
    end
    return require("chai.search").model_key(spec)
  end
  if spec:match(HUB_ID) and spec:sub(1, 1) ~= "." then return spec end
  fail(("%s: --model %s: no such folder (and not a Hub id like facebook/opt-125m)"):format(PROG, spec), 1)
end

-- The tokenizer of a model: its folder's own vocab.json + merges.txt when it has them, else the OPT
-- tokenizer through chai.data (the data folder, else the Hub).
local function tokenizer_for(dir)
  if dir and store.exists(dir .. "/vocab.json") and store.exists(dir .. "/merges.txt") then
    return require("chai.tokenizer").load(dir)
  end
  return require("chai.student").tokenizer()
end

--- Checks the options that need no model loaded (before the output folder is made): a --model
--- folder that is missing or not OPT, a task the default model does not serve. Raises a failure.
function M.validate(o)
  if o.model == nil and o.task ~= nil and o.task ~= "sst2" then
    fail(("%s: --task %s needs --model: the default model is chai's SST-2 classifier"):format(PROG, o.task), 2)
  end
  if o.model ~= nil then check_model(o.model) end
end

--- Loads the model and the task: ctx {reference =, task =, model = its identity (folder or Hub id),
--- info =, quick = {data =, steps =}}. The default model (no --model) is chai's SST-2 student,
--- trained on first use (chai.student.ensure). A pretrained model whose score head is random gets
--- it trained first (chai.ktq.prepare), so the baseline is a real classifier.
function M.setup(o, hooks)
  local chai = require "chai"
  local spec, key = o.model, nil
  M.validate(o)
  if spec == nil then
    hooks.stage("default model")
    local ok, dir = pcall(chai.student.ensure, {quick = o.quick, log = hooks.log})
    if not ok then fail(("%s: the default model: %s"):format(PROG, require("chai.search").message(dir)), 1) end
    spec, key = dir, dir
  else
    key = check_model(spec)
  end
  hooks.stage("load model")
  local ok, m = pcall(chai.opt.load, spec)
  if not ok then fail(("%s: --model %s: %s"):format(PROG, spec, require("chai.search").message(m)), 1) end
  local folder = store.is_dir(spec) and spec or nil
  hooks.stage("load data")
  local ok_task, task = pcall(function()
    local tok = tokenizer_for(folder)
    return ktq().task(o.task, {tokenizer = tok, max_length = math.min(128, m.config.max_position_embeddings)})
  end)
  if not ok_task then fail(("%s: --task %s: %s"):format(PROG, o.task, require("chai.search").message(task)), 1) end
  local info = {layers = m.config.num_hidden_layers, heads = m.config.num_attention_heads,
                hidden = m.config.hidden_size, parameters = m:num_parameters(),
                train_rows = task.train and #task.train.rows or 0, dev_rows = #task.dev.rows}
  if task.kind == "classify" and require("chai.ktq_model").score_random(m) then
    hooks.stage("train the classification head")
    local rec
    m, rec = ktq().prepare(m, task, {seed = o.seed})
    info.head = rec and {steps = rec.training and rec.training.steps, seconds = rec.seconds} or nil
  end
  -- --quick: the slices at most a tenth of the train split each (tiny data sets keep room to train).
  local quick = {steps = copy(M.quick_steps)}
  if task.train then
    quick.data = {}
    for k, v in pairs(M.quick_slices) do quick.data[k] = math.max(1, math.min(v, #task.train.rows // 10)) end
  end
  return {reference = m, task = task, model = key, info = info, quick = quick, seed = o.seed,
          measure = o.quick and M.measure.quick or M.measure.full}
end

--- Why this build cannot run a configuration (a step it lacks), or nil.
function M.unavailable(config)
  local steps = ktq().steps
  for _, s in ipairs(config.recipe.steps or {}) do
    if type(s) == "string" and not steps[s] then
      return ("step %s is not available in this build of chai"):format(s)
    end
  end
  return nil
end

--- Raises when a configuration cannot run on this model and task (a bad knob, a step that needs a
--- train split the task lacks).
function M.check(config, ctx)
  local steps = config.recipe.steps or {}
  if #steps > 0 and not ctx.task.train then
    error(("--task %s has no train split here, and its steps (%s) calibrate and train on train "
           .. "slices (the validation split is for the final metrics only); measure --configs baseline, "
           .. "or use a task with a train split (sst2, rte)"):format(ctx.task.name, table.concat(steps, ", ")), 0)
  end
  ktq().check(config.recipe, ctx.reference, ctx.task)
end

--- Every sensitivity method's scores for the unmodified model on the sensitivity slice of the
--- seed: {layers =, methods = {{method =, scores =, seconds =, samples =} or {method =, error =}}}.
function M.sensitivity(ctx, hooks)
  local k = ktq()
  local methods = require("chai.ktq_sensitivity").methods
  local out = {layers = ctx.reference.config.num_hidden_layers, seed = ctx.seed, methods = {}}
  local slice = nil
  if ctx.task.train then
    local sizes = {seed = ctx.seed}
    if ctx.measure == M.measure.quick and ctx.quick.data then
      for key, v in pairs(ctx.quick.data) do sizes[key] = v end
    end
    slice = ctx.task:slices(sizes).sensitivity
  end
  for _, method in ipairs(methods) do
    hooks.stage("sensitivity: " .. method)
    local data = method ~= "chai-ktq" and slice or nil
    local ok, res = pcall(function()
      if method ~= "chai-ktq" and not data then error("needs a train split, which this task lacks here", 0) end
      return k.sensitivity(ctx.reference, data, {method = method, seed = ctx.seed})
    end)
    if ok then
      out.methods[#out.methods + 1] = {method = method, scores = res.scores, seconds = res.seconds, samples = res.samples}
    else
      out.methods[#out.methods + 1] = {method = method, error = require("chai.search").message(res)}
    end
  end
  ctx.reference:release_training()
  return out
end

--- Builds a configuration from a copy of the unmodified model and measures it against that model:
--- {model =, records =, metrics =, minutes = build minutes}; hooks.measure = false builds only.
function M.run(config, ctx, hooks)
  local k = ktq()
  local m = k.clone(ctx.reference)
  local t0 = core.bench.now()
  local built, records = k.apply(m, config.recipe, ctx.task, {progress = false,
    on_step = function(name) hooks.stage(name) end})
  local minutes = (core.bench.now() - t0) / 60
  if built ~= m then m:free() end
  if hooks.measure == false then return {model = built, records = records, minutes = minutes} end
  hooks.stage("measure")
  local mo = copy(ctx.measure)
  mo.reference, mo.seed = ctx.reference, ctx.seed
  local metrics = k.measure(built, ctx.task, mo)
  return {model = built, records = records, metrics = metrics, minutes = minutes}
end

--- Writes a model folder chai.opt.load opens (quantized and clustered as it was measured).
function M.save(model, dir)
  model:save(dir)
end

return M
