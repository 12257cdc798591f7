-- The configurations a search measures: which steps run on top of CHAI, in which order, with
-- which knobs. Pure Lua, no model needed (lua/chai/search.lua turns them into runs).
--
-- A configuration is {name =, order = {...steps after chai...} or nil for the baseline, knobs =
-- {{key = "quant.low", value = 0.2}, ...}, recipe = {...chai.ktq recipe...}}. Names follow the
-- CHAI-KTQ project's: "baseline" (the model as given), "chai_base" (CHAI alone), "chai_" .. the
-- steps in order ("chai_quant", "chai_target_quant", ...), and "chai_ktq" for its own order
-- kd → quant → target. A grid variant appends its knobs: "chai_quant[quant.low=0.2]".
local M = {}

--- The steps a search combines on top of CHAI, and the CHAI-KTQ project's order of them.
M.steps = {"quant", "target", "kd"}
M.paper = {"kd", "quant", "target"}
--- Steps a --grid knob may name (chai's options, and the training slices under "data").
M.knob_steps = {chai = true, quant = true, target = true, kd = true, data = true}

local STEP_SET = {quant = true, target = true, kd = true}

--- The name of a configuration: order nil or false → "baseline", {} → "chai_base", the CHAI-KTQ
--- order of all three → "chai_ktq", otherwise "chai_" .. steps joined by "_".
function M.name(order)
  if not order then return "baseline" end
  if #order == 0 then return "chai_base" end
  if table.concat(order, ",") == table.concat(M.paper, ",") then return "chai_ktq" end
  return "chai_" .. table.concat(order, "_")
end

-- A list of steps checked: each one of quant/target/kd, none twice. `what` names it for errors.
local function check_order(order, what)
  local seen = {}
  for _, s in ipairs(order) do
    if not STEP_SET[s] then
      error(("%s: unknown step '%s' (steps: quant, target, kd)"):format(what, s), 0)
    end
    if seen[s] then error(("%s: step '%s' twice"):format(what, s), 0) end
    seen[s] = true
  end
  return order
end

--- The order a configuration name stands for: nil for "baseline", {} for "chai_base", the steps
--- of "chai_ktq" or "chai_<step>_<step>..." otherwise; raises naming a name it does not know.
function M.parse_name(name)
  if name == "baseline" then return nil end
  if name == "chai_base" then return {} end
  if name == "chai_ktq" then return {table.unpack(M.paper)} end
  local rest = name:match("^chai_(.+)$")
  if not rest then
    error(("unknown configuration '%s' (baseline, chai_base, chai_ktq, or chai_ followed by steps "
           .. "joined by _, e.g. chai_quant, chai_kd_target)"):format(name), 0)
  end
  local order = {}
  for s in (rest .. "_"):gmatch("([^_]*)_") do order[#order + 1] = s end
  return check_order(order, "configuration '" .. name .. "'")
end

--- An order written with dashes ("kd-quant-target") as a list of steps; raises naming it.
function M.parse_order(text)
  local order = {}
  for s in (text .. "-"):gmatch("([^-]*)-") do order[#order + 1] = s end
  if #order == 0 or text == "" then error("an empty order", 0) end
  return check_order(order, "order '" .. text .. "'")
end

-- Every permutation of a list, in lexicographic order of positions (stable, deterministic).
local function permutations(list)
  if #list <= 1 then return {{table.unpack(list)}} end
  local out = {}
  for i = 1, #list do
    local rest = {}
    for j = 1, #list do if j ~= i then rest[#rest + 1] = list[j] end end
    for _, p in ipairs(permutations(rest)) do
      table.insert(p, 1, list[i])
      out[#out + 1] = p
    end
  end
  return out
end

-- The CHAI-KTQ order of a set of steps (its steps in M.paper's order).
local function paper_order(set)
  local out = {}
  for _, s in ipairs(M.paper) do if set[s] then out[#out + 1] = s end end
  return out
end

local function reversed(list)
  local out = {}
  for i = #list, 1, -1 do out[#out + 1] = list[i] end
  return out
end

-- Every non-empty subset of M.steps, smallest first, each as a set.
local function subsets()
  local out = {}
  local n = #M.steps
  for size = 1, n do
    for mask = 1, (1 << n) - 1 do
      local set, count = {}, 0
      for i = 1, n do
        if mask & (1 << (i - 1)) ~= 0 then set[M.steps[i]] = true; count = count + 1 end
      end
      if count == size then out[#out + 1] = set end
    end
  end
  return out
end

local function set_of(order)
  local set = {}
  for _, s in ipairs(order) do set[s] = true end
  return set
end

local function set_key(set)
  local keys = {}
  for _, s in ipairs(M.steps) do if set[s] then keys[#keys + 1] = s end end
  return table.concat(keys, "+")
end

--- The orders to measure. opts.configs: a list of configuration names (nil: the default space,
--- every non-empty subset of quant/target/kd on top of CHAI); opts.orders:
---   nil      the named configurations as named; the default space in the CHAI-KTQ order and its
---            reverse (so every pair in both orders, and kd→quant→target and target→quant→kd)
---   "all"    every order of each chosen set of steps
---   "paper"  the CHAI-KTQ order of each chosen set
---   a list   these orders (lists of steps) in addition to the named configurations (with no
---            --configs: in addition to baseline and chai_base)
--- Returns the list of orders (false = the baseline, first; {} = chai_base), without repeats.
function M.orders(opts)
  local named = opts.configs
  local out, seen = {}, {}
  local function add(order)
    local key = order and table.concat(order, ",") or "baseline"
    if not seen[key] then
      seen[key] = true
      out[#out + 1] = order
    end
  end
  add(false) -- the baseline is every ratio's reference: always measured
  local sets, keep = {}, {}
  if named then
    for _, name in ipairs(named) do
      local order = M.parse_name(name)
      if order and #order == 0 then keep[#keep + 1] = {} end
      if order and #order > 0 then
        sets[#sets + 1] = set_of(order)
        keep[#keep + 1] = order
      end
    end
  else
    keep[1] = {}
    sets = subsets()
  end
  local mode = opts.orders
  if type(mode) == "table" then
    for _, o in ipairs(keep) do if named or #o == 0 then add(o) end end
    for _, o in ipairs(mode) do add(check_order(o, "order")) end
    return out
  end
  if named and mode == nil then
    for _, o in ipairs(keep) do add(o) end
    return out
  end
  if mode ~= nil and mode ~= "all" and mode ~= "paper" then
    error(("orders must be \"all\", \"paper\" or a list of orders, got %s"):format(tostring(mode)), 0)
  end
  for _, o in ipairs(keep) do if #o == 0 then add(o) end end
  -- Each set once, in the order first named (the default space: by size, as M.steps lists them).
  local uniq, seen_set = {}, {}
  for _, s in ipairs(sets) do
    local k = set_key(s)
    if not seen_set[k] then seen_set[k] = true; uniq[#uniq + 1] = s end
  end
  for _, set in ipairs(uniq) do
    local p = paper_order(set)
    if mode == "all" then
      for _, o in ipairs(permutations(p)) do add(o) end
    elseif mode == "paper" then
      add(p)
    else
      add(p)
      add(reversed(p))
    end
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- Grids

--- A --grid knob "step.key[.key...]=v1,v2" as {key = "step.key", step =, path = {...}, values =
--- {...}}: values are numbers when they read as numbers, true/false, else strings. Raises naming
--- the knob.
function M.parse_knob(text)
  local key, list = text:match("^([^=]+)=(.*)$")
  if not key or list == "" then error(("knob '%s': expected STEP.OPTION=VALUE[,VALUE...]"):format(text), 0) end
  local path = {}
  for part in (key .. "."):gmatch("([^.]*)%.") do
    if part == "" then error(("knob '%s': empty name part"):format(text), 0) end
    path[#path + 1] = part
  end
  local step = path[1]
  if not M.knob_steps[step] or #path < 2 then
    error(("knob '%s': must start with a step and an option (chai., quant., target., kd. or data.), "
           .. "e.g. quant.low=0.2,0.4"):format(text), 0)
  end
  local values, seen = {}, {}
  for raw in (list .. ","):gmatch("([^,]*),") do
    if raw == "" then error(("knob '%s': an empty value"):format(text), 0) end
    local v
    if raw == "true" then v = true elseif raw == "false" then v = false
    else v = math.tointeger(tonumber(raw)) or tonumber(raw) or raw end
    if not seen[raw] then seen[raw] = true; values[#values + 1] = v end
  end
  table.remove(path, 1)
  return {key = key, step = step, path = path, values = values}
end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return out
end
M.deep_copy = deep_copy

local function format_value(v)
  if math.type(v) == "float" then return ("%.10g"):format(v) end
  return tostring(v)
end

--- Every configuration to measure: the orders of M.orders(opts), each expanded over the grid
--- knobs that apply to it (a knob of step s applies to configurations that run s; chai. and data.
--- knobs to every configuration but the baseline), with its chai.ktq recipe:
---   {steps = {"chai", ...order}, chai = ..., quant = ..., target = ..., kd = ..., seed =, data =}
--- built from `defaults` (step name → option table: the chai.ktq recipes' defaults), opts.seed,
--- opts.data (train slice sizes) and opts.step_overrides (step name → options merged in, e.g.
--- --quick's fewer training steps). opts.grid: a list of parsed knobs. Raises when a knob applies
--- to no configuration.
function M.configs(opts, defaults)
  defaults = defaults or {}
  local orders = M.orders(opts)
  local grid = opts.grid or {}
  local used = {}
  local out = {}
  for _, order in ipairs(orders) do
    local steps = order and {"chai", table.unpack(order)} or {}
    local has = set_of(steps)
    local knobs = {}
    for _, k in ipairs(grid) do
      if order and (has[k.step] or k.step == "data") then
        knobs[#knobs + 1] = k
        used[k.key] = true
      end
    end
    -- The cartesian product of the applicable knobs' values, first knob slowest.
    local combos = {{}}
    for _, k in ipairs(knobs) do
      local next_combos = {}
      for _, c in ipairs(combos) do
        for _, v in ipairs(k.values) do
          local nc = {table.unpack(c)}
          nc[#nc + 1] = {knob = k, value = v}
          next_combos[#next_combos + 1] = nc
        end
      end
      combos = next_combos
    end
    for _, combo in ipairs(combos) do
      local base = M.name(order)
      local recipe = {name = base, steps = steps, seed = opts.seed}
      for _, s in ipairs(steps) do
        recipe[s] = deep_copy(defaults[s] or {})
        for k, v in pairs((opts.step_overrides or {})[s] or {}) do recipe[s][k] = deep_copy(v) end
      end
      if order and opts.data then recipe.data = deep_copy(opts.data) end
      local labels, applied = {}, {}
      for _, c in ipairs(combo) do
        local k = c.knob
        local t = k.step == "data" and (function() recipe.data = recipe.data or {}; return recipe.data end)() or recipe[k.step]
        for i = 1, #k.path - 1 do
          if type(t[k.path[i]]) ~= "table" then t[k.path[i]] = {} end
          t = t[k.path[i]]
        end
        t[k.path[#k.path]] = c.value
        labels[#labels + 1] = k.key .. "=" .. format_value(c.value)
        applied[#applied + 1] = {key = k.key, value = c.value}
      end
      local name = #labels > 0 and (base .. "[" .. table.concat(labels, ",") .. "]") or base
      recipe.name = name
      out[#out + 1] = {name = name, base = base, order = order, knobs = applied, recipe = recipe}
    end
  end
  for _, k in ipairs(grid) do
    if not used[k.key] then
      error(("knob '%s' applies to no configuration (none runs the %s step)"):format(k.key, k.step), 0)
    end
  end
  return out
end

return M
