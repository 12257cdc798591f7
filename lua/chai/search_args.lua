-- The command line of experiments/search.lua, parsed and checked before anything runs. A mistake
-- raises a chai.cli failure with status 2 whose one-line message names the option and the value.
local space = require "chai.search_space"

local M = {}

M.prog = "search.lua"
M.tasks = {"sst2", "rte", "piqa"}

M.usage = [[
usage: chai script experiments/search.lua [options]
Searches CHAI + quantization + targeted fine-tuning + distillation configurations of a model on a
task, measures every one, and writes results.jsonl, report.html and the chosen model (best/).
  --model M         a model folder or a Hub id (facebook/opt-125m, -350m, -1.3b); default: chai's
                    own SST-2 classifier, trained on first use and cached
  --task T          sst2 | rte | piqa                                   [sst2]
  --criterion C     accuracy | latency | throughput | memory | pareto   [pareto]
  --configs LIST    configurations, e.g. chai_quant,chai_kd,chai_ktq    [every subset of
                    quant, target, kd on top of chai_base]
  --orders O        all | paper | LIST of orders like kd-quant-target,target-quant-kd
                    [the CHAI-KTQ order and its reverse]
  --grid K=V,V ...  knob grids, e.g. --grid quant.low=0.2,0.4 kd.alpha=0.3,0.7
  --budget MIN      stop cleanly after MIN minutes, reporting what finished
  --out DIR         output folder [results/search-<model>-<task>-<time>/]
  --resume DIR      continue the search in DIR (skips the configurations it finished)
  --quick           small slices and few training steps: a smoke run of a few minutes
  --seed N          seed of every random choice [1]
  --format md       also write report.md
  -h, --help        this text
See docs/search.md.]]

--- Raises a failure for the person at the command line (chai.cli.fail): `message` on one line,
--- exit `status`.
M.fail = require("chai.cli").fail

local function bad(msg) M.fail(M.prog .. ": " .. msg .. " (--help lists the options)", 2) end

local function one_of(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function split_commas(text)
  local out = {}
  for item in (text .. ","):gmatch("([^,]*),") do
    if item ~= "" then out[#out + 1] = item end
  end
  return out
end

local VALUE = {model = true, task = true, criterion = true, configs = true, orders = true, grid = true,
               budget = true, out = true, resume = true, seed = true, format = true}
local FLAG = {quick = true}

--- Parses the arguments: returns {model =, task =, criterion =, configs = {names} or nil, orders =
--- nil | "all" | "paper" | {orders}, grid = {knobs}, budget = minutes, out =, resume =, quick =,
--- seed =, format =, given = {option = true}} (nil where not given), or {help = true}.
function M.parse(args)
  local o = {given = {}, grid = {}}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "-h" or a == "--help" then return {help = true} end
    local name, inline = a:match("^%-%-([%w][%w%-]*)=(.*)$")
    name = name or a:match("^%-%-([%w][%w%-]*)$")
    if not name then
      if a:sub(1, 1) == "-" then bad("unknown option '" .. a .. "'") end
      bad("unexpected argument '" .. a .. "'")
    end
    if FLAG[name] then
      if inline then bad("--" .. name .. " takes no value") end
      o[name] = true
    elseif VALUE[name] then
      local v = inline
      if v == nil then
        i = i + 1
        v = args[i]
        if v == nil or (v:sub(1, 2) == "--" and name ~= "grid") then bad("--" .. name .. " needs a value") end
      end
      if name == "grid" then
        -- One or more KEY=VALUES words: this one and the plain words after it.
        local words = {v}
        while args[i + 1] and args[i + 1]:sub(1, 1) ~= "-" do
          i = i + 1
          words[#words + 1] = args[i]
        end
        for _, w in ipairs(words) do
          local ok, knob = pcall(space.parse_knob, w)
          if not ok then bad("--grid " .. tostring(knob)) end
          for _, k in ipairs(o.grid) do
            if k.key == knob.key then bad("--grid names " .. knob.key .. " twice") end
          end
          o.grid[#o.grid + 1] = knob
        end
      else
        if o.given[name] then bad("--" .. name .. " given twice") end
        o[name] = v
      end
    else
      bad("unknown option '--" .. name .. "'")
    end
    o.given[name] = true
    i = i + 1
  end
  if o.task ~= nil and not one_of(M.tasks, o.task) then
    bad(("--task '%s': not a task (sst2, rte, piqa)"):format(o.task))
  end
  local pick = require "chai.search_pick"
  if o.criterion ~= nil and not pick.by_name[o.criterion] then
    bad(("--criterion '%s': not a criterion (%s)"):format(o.criterion, table.concat(pick.criteria, ", ")))
  end
  if o.configs ~= nil then
    local names = split_commas(o.configs)
    if #names == 0 then bad("--configs needs at least one configuration name") end
    for _, n in ipairs(names) do
      local ok, err = pcall(space.parse_name, n)
      if not ok then bad("--configs: " .. err) end
    end
    o.configs = names
  end
  if o.orders ~= nil and o.orders ~= "all" and o.orders ~= "paper" then
    local list = {}
    for _, text in ipairs(split_commas(o.orders)) do
      local ok, order = pcall(space.parse_order, text)
      if not ok then bad(("--orders '%s': %s (all, paper, or orders like kd-quant-target)"):format(o.orders, order)) end
      list[#list + 1] = order
    end
    if #list == 0 then bad("--orders needs all, paper or a list of orders") end
    o.orders = list
  end
  if o.budget ~= nil then
    local b = tonumber(o.budget)
    if not b or b <= 0 or b ~= b or b == math.huge then
      bad(("--budget '%s': needs a positive number of minutes"):format(o.budget))
    end
    o.budget = b
  end
  if o.seed ~= nil then
    local s = math.tointeger(tonumber(o.seed))
    if not s or s < 0 then bad(("--seed '%s': needs a non-negative integer"):format(o.seed)) end
    o.seed = s
  end
  if o.format ~= nil and o.format ~= "md" then
    bad(("--format '%s': the one extra format is md (report.html is always written)"):format(o.format))
  end
  for _, k in ipairs({"model", "out", "resume"}) do
    if o[k] == "" then bad("--" .. k .. " needs a non-empty value") end
  end
  if o.out and o.resume then bad("--out and --resume both name the output folder; give one") end
  -- The grid and the configurations must meet: a knob whose step no configuration runs is a mistake.
  if #o.grid > 0 then
    local ok, err = pcall(space.configs, {configs = o.configs, orders = o.orders, grid = o.grid}, {})
    if not ok then bad("--grid " .. err) end
  else
    local ok, err = pcall(space.orders, {configs = o.configs, orders = o.orders})
    if not ok then bad(err) end
  end
  return o
end

return M
