-- chai.serve_catalog: what `chai serve` offers (GET /models) and so what a job may name: the
-- models (the search's default, OPT models in the Hugging Face cache, models trained by chai), the
-- tasks with their splits, the configurations of the search space and the criteria. A request
-- names a model by the name listed here and nothing else, so no request can point a job at a path
-- of its choosing. The listing is read from disk at most every few seconds.
local core = require "chai.core"
local fs, json = core.serve, core.json

local M = {}
M.__index = M

-- Used when the search's modules (chai.search_space, chai.search_pick) are not installed.
M.default_criteria = {"accuracy", "latency", "throughput", "memory", "pareto"}
M.default_configurations = {"baseline", "chai_base", "chai_quant", "chai_target", "chai_kd",
                            "chai_ktq"}

local function read_json(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local ok, v = pcall(json.decode, text)
  return ok and type(v) == "table" and v or nil
end

local function is_dir(path)
  local st = fs.stat(path)
  return st ~= nil and st.type == "dir"
end

-- A short description of an OPT config.json, or nil when the folder holds no OPT model.
local function describe(config)
  if not config or config.model_type ~= "opt" then return nil end
  return {layers = config.num_hidden_layers, hidden = config.hidden_size,
          heads = config.num_attention_heads, num_labels = config.num_labels or
            (type(config.id2label) == "table" and #config.id2label or nil)}
end

-- OPT models in the Hugging Face cache: models--org--name/snapshots/<rev>/config.json.
local function hub_models(out)
  local ok, dir = pcall(function() return require("chai.hub").cache_dir() end)
  if not ok or not dir then return end
  for _, entry in ipairs(fs.listdir(dir) or {}) do
    local org, name = entry:match("^models%-%-([%w%._%-]+)%-%-([%w%._%-]+)$")
    if org then
      local snaps = dir .. "/" .. entry .. "/snapshots"
      for _, rev in ipairs(fs.listdir(snaps) or {}) do
        local info = describe(read_json(snaps .. "/" .. rev .. "/config.json"))
        if info then
          local id = org .. "/" .. name
          info.name, info.source, info.arg = id, "hub cache", id
          out[#out + 1] = info
          break
        end
      end
    end
  end
end

-- Models trained by chai: <models dir>/<name>/config.json (chai.train.models_dir()).
local function trained_models(out)
  local ok, dir = pcall(function() return require("chai.train").models_dir() end)
  if not ok or not dir then return end
  for _, name in ipairs(fs.listdir(dir) or {}) do
    local path = dir .. "/" .. name
    if name:match("^[%w][%w%._%-]*$") and name ~= "default" and is_dir(path) then
      local info = describe(read_json(path .. "/config.json"))
      if info then
        info.name, info.source, info.arg = name, "trained by chai", path
        out[#out + 1] = info
      end
    end
  end
end

--- A catalog. opts.configurations overrides the search space's names; opts.ttl (seconds) how
--- long a listing is reused.
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({ttl = opts.ttl or 5, listed_at = -math.huge}, M)
  local ok, space = pcall(require, "chai.search_space")
  self.space = ok and type(space) == "table" and space.orders and space.name and space.parse_name
               and space or nil
  self.configurations = opts.configurations or M.search_configurations(self.space)
  local okp, pick = pcall(require, "chai.search_pick")
  self.criteria = okp and type(pick) == "table" and type(pick.criteria) == "table"
                  and #pick.criteria > 0 and pick.criteria or M.default_criteria
  return self
end

--- The configurations of the search's default space (chai.search_space: the baseline, CHAI
--- alone, and each set of steps in the CHAI-KTQ order and its reverse), else the default names.
function M.search_configurations(space)
  if not space then return M.default_configurations end
  local names = {}
  for _, order in ipairs(space.orders({})) do names[#names + 1] = space.name(order) end
  return names
end

--- The canonical name of a configuration (the search's spelling: "chai_kd_quant_target" is
--- "chai_ktq"), or nil when the search does not know it. A dash reads as an underscore (the
--- CHAI-KTQ project wrote "chai-quant").
function M:configuration(name)
  name = name:gsub("%-", "_")
  if not self.space then
    for _, c in ipairs(self.configurations) do if c == name then return c end end
    return nil
  end
  if not name:match("^[%w_]+$") then return nil end
  local ok, order = pcall(self.space.parse_name, name)
  if not ok then return nil end
  return self.space.name(order)
end

local function task_list()
  local data = require "chai.data"
  local tasks = {}
  for _, name in ipairs(data.task_names) do tasks[#tasks + 1] = data.task_info(name) end
  return tasks
end

--- The listing (re-read when older than ttl): {models = {...}, tasks = {...}, configurations =
--- {...}, criteria = {...}}. Each model: {name=, source=, layers=, hidden=, heads=}; `arg` (what
--- the search's --model gets) is kept out of the public listing.
function M:list(now)
  now = now or fs.now()
  if now - self.listed_at < self.ttl and self.listing then return self.listing end
  local models = {{name = "default", source = "search default",
                   description = "the search's default model (the chai-trained SST-2 classifier, "
                     .. "trained on first use)"}}
  hub_models(models)
  trained_models(models)
  self.by_name = {}
  local public = {}
  for i, m in ipairs(models) do
    self.by_name[m.name] = m
    local p = {}
    for k, v in pairs(m) do if k ~= "arg" then p[k] = v end end
    public[i] = p
  end
  self.listing = {models = public, tasks = task_list(), configurations = self.configurations,
                  criteria = self.criteria}
  self.tasks_by_name = {}
  for _, t in ipairs(self.listing.tasks) do self.tasks_by_name[t.name] = t end
  self.listed_at = now
  self.encoded = nil
  return self.listing
end

--- The listing as JSON text (cached with it).
function M:json(now)
  self:list(now)
  if not self.encoded then self.encoded = json.encode(self.listing) end
  return self.encoded
end

--- The model called `name` ({name=, source=, arg=}), or nil.
function M:model(name)
  self:list()
  return self.by_name[name]
end

function M:task(name)
  self:list()
  return self.tasks_by_name[name]
end

return M
