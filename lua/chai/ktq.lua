-- chai.ktq: CHAI, quantization, targeted fine-tuning and distillation as composable recipes, with
-- honest data discipline. See docs/ktq.md.
--
--   local task = chai.ktq.task("sst2", {tokenizer = tok})
--   local m2, records = chai.ktq.apply(m, chai.ktq.recipes.chai_kd, task)
--   local metrics = chai.ktq.measure(m2, task, {reference = m})
--   chai.ktq.sensitivity(m, slice, {method = "fisher"})   chai.ktq.tiers(scores)   chai.ktq.top(scores, 0.3)
--
-- A recipe is a table: {steps = {"chai", "kd", "quant", "target"}, chai = {...}, kd = {...},
-- target = {...}, seed = 1, data = {calibration = 256, sensitivity = 256, heldout = 500}}; a step is
-- a name in chai.ktq.steps or any function(model, ctx, opts) → model, record.
local core = require "chai.core"
local tiers = require "chai.tiers"
local task_mod = require "chai.ktq_task"
local sens = require "chai.ktq_sensitivity"
local steps_mod = require "chai.ktq_steps"
local util = require "chai.ktq_model"

local M = {}

M.task = task_mod.task
M.is_task = task_mod.is_task
M.is_dataset = task_mod.is_dataset
M.tiers = tiers.tiers
M.top = tiers.top
M.sensitivity = sens.sensitivity
M.save_sensitivity = sens.save
M.perturbations = sens.perturbations
M.clone = util.clone
M.weight_bytes = util.weight_bytes
M.drop_layers = steps_mod.drop_layers

--- The step registry: name → function(model, ctx, opts) → model, record. The built-ins are chai,
--- quant, target, kd and head.
M.steps = steps_mod.steps
--- Option checks run on the whole recipe before any step: name → function(opts, model, task).
M.checks = steps_mod.checks

-- Steps that recipes name but this build cannot run (a clear error, not "unknown step"); none now.
local PENDING = {}

local function deep_copy(v)
  if type(v) ~= "table" or getmetatable(v) then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return out
end

--- A copy of `base` (a recipe or the name of one in chai.ktq.recipes) with `overrides` merged in:
--- nested option tables merge key by key, lists (steps, layers) are replaced.
function M.recipe(base, overrides)
  if type(base) == "string" then
    local r = M.recipes[base]
    if not r then error(("chai.ktq.recipe: no recipe named '%s'"):format(base), 2) end
    base = r
  end
  local out = deep_copy(base)
  local function merge(dst, src)
    for k, v in pairs(src) do
      if type(v) == "table" and not getmetatable(v) and type(dst[k]) == "table" and #v == 0 and next(v) ~= nil then
        merge(dst[k], v)
      else
        dst[k] = deep_copy(v)
      end
    end
  end
  merge(out, overrides or {})
  return out
end

-- ---------------------------------------------------------------------------------------------
-- The CHAI-KTQ project's six configurations, done as their papers describe them (defaults in
-- docs/ktq.md). Quant → the quant step's tiers; Target → fine-tune the top 30% of layers by
-- sensitivity + the head; KD → distil the unmodified model into the compressed one.

local QUANT = {sensitivity = "perturb", high = 0.3, low = 0.3,
               formats = {high = "f32", medium = "int8", low = "int4"}, kv = "int8"}
local TARGET = {fraction = 0.3, sensitivity = "fisher", steps = 400}
local KD = {alpha = 0.5, T = 2, steps = 400}

M.recipes = {
  baseline = {name = "baseline", steps = {}},
  chai_base = {name = "chai_base", steps = {"chai"}, chai = {mode = "static"}},
  chai_quant = {name = "chai_quant", steps = {"chai", "quant"}, chai = {mode = "static"},
                quant = deep_copy(QUANT)},
  chai_target = {name = "chai_target", steps = {"chai", "target"}, chai = {mode = "static"},
                 target = deep_copy(TARGET)},
  chai_kd = {name = "chai_kd", steps = {"chai", "kd"}, chai = {mode = "static"}, kd = deep_copy(KD)},
  chai_ktq = {name = "chai_ktq", steps = {"chai", "kd", "quant", "target"}, chai = {mode = "static"},
              kd = deep_copy(KD), quant = deep_copy(QUANT), target = deep_copy(TARGET)},
}
M.recipe_names = {"baseline", "chai_base", "chai_quant", "chai_target", "chai_kd", "chai_ktq"}

-- ---------------------------------------------------------------------------------------------
-- Recipe checks (all before any step runs)

local TOP_KNOWN = {name = true, description = true, steps = true, seed = true, data = true}
local DATA_KNOWN = {calibration = true, sensitivity = true, heldout = true, fit = true}
-- Step options that hand data to calibration, sensitivity or early stopping.
local DATA_KEYS = {calibration = true, heldout = true, texts = true, data = true, train = true}

local function step_name(entry, i)
  if type(entry) == "string" then return entry end
  if type(entry) == "function" then return "step" .. i end
  if type(entry) == "table" and type(entry.run) == "function" then return entry.name or ("step" .. i) end
  return nil
end

local function known_steps()
  local names = {}
  for n in pairs(M.steps) do names[#names + 1] = n end
  table.sort(names)
  return table.concat(names, ", ")
end

local check_recipe

--- Checks a recipe against a model and task without running it; raises with the bad value named.
function M.check(recipe, model, task)
  local ok, err = pcall(check_recipe, recipe, model, task)
  if not ok then error(err, 2) end
  return true
end

function check_recipe(recipe, model, task)
  if type(recipe) ~= "table" then error("chai.ktq: a recipe must be a table, got " .. type(recipe), 0) end
  if not task_mod.is_task(task) then error("chai.ktq: the task must come from chai.ktq.task", 0) end
  local steps = recipe.steps
  if type(steps) ~= "table" then error("chai.ktq: recipe.steps must be a list of steps", 0) end
  local names = {}
  for i, entry in ipairs(steps) do
    local name = step_name(entry, i)
    if not name then
      error(("chai.ktq: recipe.steps[%d] must be a step name, a function or {name=, run=}, got %s"):format(i, type(entry)), 0)
    end
    if type(entry) == "string" and not M.steps[entry] then
      if PENDING[entry] then
        error(("chai.ktq: step %s is not available: %s (known steps: %s)"):format(entry, PENDING[entry], known_steps()), 0)
      end
      error(("chai.ktq: unknown step '%s' in recipe.steps[%d] (known: %s)"):format(entry, i, known_steps()), 0)
    end
    names[name] = true
  end
  for k in pairs(recipe) do
    if not (TOP_KNOWN[k] or M.steps[k] or PENDING[k] or names[k]) then
      error(("chai.ktq: unknown recipe key '%s' (a step's options go under its name)"):format(tostring(k)), 0)
    end
  end
  if recipe.seed ~= nil and math.type(recipe.seed) ~= "integer" then
    error("chai.ktq: recipe.seed must be an integer, got " .. tostring(recipe.seed), 0)
  end
  if recipe.data ~= nil then
    if type(recipe.data) ~= "table" then error("chai.ktq: recipe.data must be a table of slice sizes", 0) end
    for k, v in pairs(recipe.data) do
      if not DATA_KNOWN[k] then
        error(("chai.ktq: unknown recipe.data key '%s' (known: calibration, fit, heldout, sensitivity)"):format(tostring(k)), 0)
      end
      local ok, err = pcall(task_mod.check_train_data, task, v, "data." .. k)
      if not ok then error(err, 0) end
      if math.type(v) ~= "integer" then
        error(("chai.ktq: recipe.data.%s must be a number of train rows, got %s"):format(k, type(v)), 0)
      end
    end
  end
  for _, entry in ipairs(steps) do
    if type(entry) == "string" then
      local o = recipe[entry]
      if o ~= nil and type(o) ~= "table" then
        error(("chai.ktq: recipe.%s must be a table of options, got %s"):format(entry, type(o)), 0)
      end
      o = o or {}
      for key in pairs(DATA_KEYS) do
        if o[key] ~= nil and math.type(o[key]) ~= "integer" then
          local ok, err = pcall(task_mod.check_train_data, task, o[key], entry .. "." .. key)
          if not ok then error(err, 0) end
        end
      end
      local sopts = o.sensitivity_opts
      if type(sopts) == "table" and sopts.data ~= nil then
        local ok, err = pcall(task_mod.check_train_data, task, sopts.data, entry .. ".sensitivity_opts.data")
        if not ok then error(err, 0) end
      end
      if M.checks[entry] then
        local ok, err = pcall(M.checks[entry], o, model, task)
        if not ok then error("chai.ktq: " .. tostring(err), 0) end
      end
    end
  end
  return true
end

-- ---------------------------------------------------------------------------------------------
-- The context steps see

local Ctx = {}
Ctx.__index = Ctx

--- The train slices (seeded, disjoint): calibration, sensitivity, heldout, fit. `who` names the
--- step for the error a task without a train split raises.
function Ctx:slices(who)
  if not self._slices then
    if not self.task.train then
      error(("step %s needs the train split, and task %s has none here (PIQA ships its validation "
             .. "split only); it refuses rather than touch the validation split"):format(who or "?", self.task.name), 0)
    end
    local sizes = {seed = self.seed}
    for k, v in pairs(self.recipe.data or {}) do sizes[k] = v end
    self._slices = self.task:slices(sizes)
  end
  return self._slices
end

--- A data value a step option names (a data set or a user's rows), checked for discipline.
function Ctx:dataset(value, where)
  task_mod.check_train_data(self.task, value, where)
  if task_mod.is_dataset(value) then return value end
  return task_mod.user_dataset(self.task, value, where)
end

--- The model as it was before the first step (a copy made when apply started; kd's default teacher).
function Ctx:original()
  if not self._original then error("no copy of the unmodified model was kept", 0) end
  return self._original
end

--- Whether the recipe has a step of this name.
function Ctx:has_step(name)
  for _, e in ipairs(self.recipe.steps) do if e == name then return true end end
  return false
end

--- The layers "target" trains (and "kd" too when the recipe has target), computed once per model.
function Ctx:selection(model, o)
  self._selection = self._selection or setmetatable({}, {__mode = "k"})
  local sel = self._selection[model]
  if not sel then
    sel = steps_mod.select(model, self, o or {})
    self._selection[model] = sel
  end
  return sel
end

-- ---------------------------------------------------------------------------------------------
-- apply

local function common_before(model)
  return {bytes = util.weight_bytes(model), kv = util.kv_bytes_per_token(model),
          params = model:num_parameters()}
end

--- Trains a pretrained model's random classification head first (step "head"), so the baseline
--- is a real classifier. Returns model, record (nil when the head was already trained or the task
--- is not classification). opts: the head step's options and seed.
function M.prepare(model, task, opts)
  opts = opts or {}
  if task.kind ~= "classify" or not util.score_random(model) then return model, nil end
  local recipe = {steps = {"head"}, head = opts.head, seed = opts.seed, data = opts.data}
  local m, records = M.apply(model, recipe, task, {progress = opts.progress, prepare = false})
  return m, records[1]
end

--- Runs a recipe on a model for a task. The model is changed in place (and a step may return a
--- new one: pruning, fewer layers); the result and the step records are returned:
---   records[i] = {step=, index=, seconds=, what=, params_trained=, bytes_before=, bytes_after=,
---                 bytes_by_format_before/after=, kv_bytes_per_token_before/after=, ...}
--- A pretrained model whose classification head is random gets the "head" step first (options:
--- recipe.head). opts:
--- progress (lines on stderr), prepare (false: do not train a random head first), on_step
--- (function(name, i, n) called as step i of n begins: the search's progress lines).
function M.apply(model, recipe, task, opts)
  opts = opts or {}
  local ok, err = pcall(check_recipe, recipe, model, task)
  if not ok then error(err, 2) end
  local ctx = setmetatable({task = task, recipe = recipe, seed = recipe.seed or 0, records = {},
                            progress = opts.progress}, Ctx)
  local records = {}
  local plan = {}
  for i, entry in ipairs(recipe.steps) do
    local name = step_name(entry, i)
    local fn = type(entry) == "string" and M.steps[entry] or (type(entry) == "table" and entry.run or entry)
    local o = type(entry) == "string" and (recipe[entry] or {}) or (type(entry) == "table" and entry.opts or {})
    plan[#plan + 1] = {name = name, fn = fn, opts = o}
  end
  if opts.prepare ~= false and task.kind == "classify" and util.score_random(model) then
    table.insert(plan, 1, {name = "head", fn = M.steps.head, opts = recipe.head or {}})
  end
  local needs_original = false
  for _, p in ipairs(plan) do
    if p.name == "kd" and p.opts.teacher == nil then needs_original = true end
  end
  local current = model
  for i, p in ipairs(plan) do
    if needs_original and not ctx._original and p.name ~= "head" then
      ctx._original = util.clone(current)
    end
    ctx.index = i
    local before = common_before(current)
    if opts.progress then io.stderr:write(("chai.ktq: step %d/%d %s\n"):format(i, #plan, p.name)) end
    if opts.on_step then opts.on_step(p.name, i, #plan) end
    local t0 = core.bench.now()
    local ok, out, rec = pcall(p.fn, current, ctx, p.opts)
    if not ok then error(("chai.ktq.apply: step %d (%s): %s"):format(i, p.name, tostring(out)), 2) end
    if type(out) ~= "userdata" then
      error(("chai.ktq.apply: step %d (%s) must return the model (and a record), got %s"):format(i, p.name, type(out)), 2)
    end
    rec = type(rec) == "table" and rec or {}
    local after = common_before(out)
    rec.step, rec.index, rec.seconds = p.name, i, core.bench.now() - t0
    rec.params_trained = rec.params_trained or 0
    rec.bytes_before, rec.bytes_after = before.bytes.total, after.bytes.total
    rec.bytes_by_format_before, rec.bytes_by_format_after = before.bytes.by_format, after.bytes.by_format
    rec.kv_bytes_per_token_before, rec.kv_bytes_per_token_after = before.kv, after.kv
    rec.parameters_before, rec.parameters_after = before.params, after.params
    records[#records + 1] = rec
    ctx.records = records
    if opts.progress then
      io.stderr:write(("chai.ktq: step %d/%d %s done in %.1f s: %s\n"):format(i, #plan, p.name,
                                                                           rec.seconds, tostring(rec.what or "")))
    end
    current = out
  end
  return current, records
end

M.measure = function(...) return require("chai.ktq_measure").measure(...) end

return M
