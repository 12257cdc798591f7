-- chai.quant: quantization plans. The formats, kernels and per-matrix API are on the model
-- (m:quantize, m:formats, chai.opt.load{quant = spec}); see docs/quant.md.
--
--   chai.quant.plan(scores, {high = 0.3, low = 0.3, formats = {high = "f32", medium = "int8",
--                   low = "int4"}}) --> {layers = {[l] = format, ...}} (a spec m:quantize takes), tiers
--   chai.quant.formats                --> {"f32", "f16", "bf16", "int8", "int4"}
--   chai.quant.kernels()              --> {int8 = "avx512-vnni", ...}: the kernel of each format here
local core = require "chai.core"
local tiers = require "chai.tiers"

local M = {}

M.formats = {"f32", "f16", "bf16", "int8", "int4"}
local FORMAT = {}
for _, f in ipairs(M.formats) do FORMAT[f] = true end

--- Per-layer formats from sensitivity scores (any source; higher = more sensitive), by the tier
--- rule of chai.tiers: the top `high` fraction of layers (⌊high·L⌋, at least one when high > 0)
--- takes formats.high, the bottom `low` fraction of the rest formats.low, the others
--- formats.medium; equal scores rank the earlier layer as the more sensitive. Returns a spec
--- {layers = {[l] = format}} (1-based layers) ready for m:quantize (add embeddings=, kv=, group=,
--- method= as wanted), and the tiers {high = {layers}, medium = ..., low = ...}.
function M.plan(scores, opts)
  local fname = "chai.quant.plan"
  opts = opts or {}
  if type(opts) ~= "table" then error(fname .. ": options must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "high" and k ~= "low" and k ~= "formats" then
      error(("%s: unknown option '%s' (known: formats, high, low)"):format(fname, tostring(k)), 2)
    end
  end
  local formats = {high = "f32", medium = "int8", low = "int4"}
  if opts.formats ~= nil then
    if type(opts.formats) ~= "table" then error(fname .. ": formats must be a table {high=, medium=, low=}", 2) end
    for k, v in pairs(opts.formats) do
      if formats[k] == nil then
        error(("%s: formats.%s: unknown tier (known: high, medium, low)"):format(fname, tostring(k)), 2)
      end
      if not FORMAT[v] then
        error(("%s: formats.%s = %s is not a format (%s)"):format(fname, k, tostring(v), table.concat(M.formats, ", ")), 2)
      end
      formats[k] = v
    end
  end
  local ok, t = pcall(tiers.tiers, scores, {high = opts.high, low = opts.low})
  if not ok then error((tostring(t):gsub("chai%.ktq%.tiers", fname)), 2) end
  local layers = {}
  for l, tier in pairs(t.tier) do layers[l] = formats[tier] end
  return {layers = layers}, {high = t.high, medium = t.medium, low = t.low}
end

--- The kernel each format uses on this CPU now (after CHAI_CPU).
function M.kernels()
  return core.cpu().kernels
end

return M
