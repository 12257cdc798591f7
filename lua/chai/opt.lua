-- chai.opt: OPT models in the Hugging Face layout (config.json + model.safetensors /
-- pytorch_model.bin / a sharded index), as userdata "chai.Model". See docs/opt.md.
--
--   local m = chai.opt.load(dir_or_hub_id, {dtype=, revision=, quiet=, mmap=, quant=})
--   m.config                                   -- table, Hugging Face key names
--   m:forward(ids, {attention_mask=, last_only=}) --> f32 tensor (B,T,vocab) ((B,vocab) last_only)
--   m:classify(ids, {attention_mask=})         --> f32 tensor (B,num_labels)
--   m:generate(ids, {max_new_tokens=, temperature=, top_k=, top_p=, seed=, eos_token_id=})
--                                              --> table of the NEW token ids
--   m:save(dir)   m:num_parameters()   m:memory() --> {weights=, kv_cache=, activations=}
--   m:warnings()  m:dtype()  m:free()
--   m:quantize(spec) --> m      m:formats() --> {[name] = "int8", ..., kv_cache = "f32"}
--                               (docs/quant.md; memory() also gives weights_by_format)
--   chai.opt.create(config_table, {dtype=, seed=}) --> a randomly initialised model
local core = require "chai.core"

local M = {}

local function check_opts(fname, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(fname .. ": options must be a table, got " .. type(opts), 3) end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (known: %s)", fname, tostring(k),
                          table.concat(names, ", ")), 3)
    end
  end
  return opts
end

local function is_model_dir(path)
  local f = io.open(path .. "/config.json", "rb")
  if f then f:close() end
  return f ~= nil
end

-- A folder saved from a model under a CHAI head plan holds chai_heads.json (m:save writes it: the
-- plan, its "meta" naming the mode); the model is put back under that plan.
local function apply_saved_heads(m, dir)
  local path = dir .. "/chai_heads.json"
  local f = io.open(path, "rb")
  if not f then return end
  f:close()
  local heads = require "chai.heads"
  local plan = heads.load_plan(path, {layers = m.config.num_hidden_layers, heads = m.config.num_attention_heads})
  local mode = type(plan.meta) == "table" and plan.meta.mode or "static"
  if mode ~= "static" and mode ~= "online" then
    error(string.format("meta.mode must be \"static\" or \"online\", got %s", tostring(mode)), 0)
  end
  m:set_heads(plan, {mode = mode})
end

--- Loads an OPT model from a local folder, or from the Hub (through chai.hub, into the shared
--- huggingface_hub cache) when `dir_or_id` is not a folder with a config.json.
--- opts.dtype: "f32" (default, exact), "f16" or "bf16" (matrices kept at 2 bytes).
--- opts.revision: a Hub branch, tag, "refs/pr/N" or commit (Hub ids only).
--- opts.quiet: do not print the model's warnings to stderr (m:warnings() still lists them).
--- opts.quant: a quantization spec (as m:quantize takes): each matrix is quantized as it is read,
--- without an f32 copy of the model.
--- A folder with chai_heads.json (m:save of a clustered model) comes back under its head plan and
--- mode; opts.heads = false loads it dense.
function M.load(dir_or_id, opts)
  local fname = "chai.opt.load"
  opts = check_opts(fname, opts, {dtype = true, revision = true, quiet = true, mmap = true,
                                  quant = true, heads = true})
  if opts.quant ~= nil and type(opts.quant) ~= "table" then
    error(fname .. ": quant must be a table (a quantization spec, see docs/quant.md), got "
          .. type(opts.quant), 2)
  end
  if type(dir_or_id) ~= "string" or dir_or_id == "" then
    error(fname .. ": expected a model folder or a Hub repo id, got " .. type(dir_or_id), 2)
  end
  if opts.dtype ~= nil and type(opts.dtype) ~= "string" then
    error(fname .. ": dtype must be a string (\"f32\", \"f16\" or \"bf16\")", 2)
  end
  if opts.mmap ~= nil and type(opts.mmap) ~= "boolean" then
    error(fname .. ": mmap must be true or false, got " .. type(opts.mmap), 2)
  end
  local dir = dir_or_id
  if not is_model_dir(dir) then
    local looks_like_id = dir:match("^[%w][%w._-]*/[%w._-]+$") ~= nil
    if looks_like_id then
      local ok, hub = pcall(require, "chai.hub")
      if not ok then
        error(string.format("%s: '%s' is not a local model folder, and chai.hub (needed to fetch "
                            .. "it from the Hub) is not available: %s", fname, dir, tostring(hub)), 2)
      end
      dir = hub.locate(dir, {revision = opts.revision})
    end
  end
  local ok, m = pcall(core.opt_load, dir, opts.dtype, opts.quiet, opts.mmap == false, opts.quant)
  if not ok then error(m, 2) end
  if opts.heads ~= false then
    local plan_ok, err = pcall(apply_saved_heads, m, dir)
    if not plan_ok then
      m:free()
      error(string.format("%s: %s/chai_heads.json: %s", fname, dir, tostring(err)), 2)
    end
  end
  return m
end

--- A new model with Hugging Face's initialisation from a config table (Hugging Face key names;
--- the shape keys are required), for benchmarks and experiments. opts.seed seeds the weights
--- (default: chai.seed's generator); opts.dtype as in load.
function M.create(config, opts)
  local fname = "chai.opt.create"
  opts = check_opts(fname, opts, {dtype = true, seed = true})
  if type(config) ~= "table" then error(fname .. ": config must be a table", 2) end
  local ok, m = pcall(core.opt_create, core.json.encode(config), opts.dtype, opts.seed)
  if not ok then error(m, 2) end
  return m
end

--- The best streaming-read bandwidth of this machine in GB/s (1e9 bytes/s), all threads.
function M.read_bandwidth(megabytes, repeats)
  return core.opt_read_bandwidth(megabytes, repeats)
end

return M
