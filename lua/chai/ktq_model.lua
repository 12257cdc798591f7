-- chai.ktq helpers on models: copies, the trainable set, what a model weighs, evaluation on
-- encoded rows, and option checks shared by the steps.
local opt = require "chai.opt"
local train = require "chai.train"

local M = {}

--- A copy of a model that shares nothing with it: the same config, weights in their formats (bit
--- for bit: quantized matrices keep their codes), KV cache format, head plan and mode, trainable
--- set, and trained/random state of the score head.
function M.clone(m)
  local c = m:clone()
  local h = m:heads()
  if h.plan then c:set_heads(h.plan, {mode = h.mode}) end
  local names, _ = m:trainable()
  if #names < M.param_count(m) then M.set_trainable(c, names) end
  return c
end

--- True when the model's classification head is a random one (drawn at load, never trained).
function M.score_random(m)
  return m:score_random()
end

function M.param_count(m)
  local n = 0
  for _ in pairs(m:params()) do n = n + 1 end
  return n
end

--- Weight bytes by format: {total = bytes, by_format = {[format] = bytes}}. The one place chai.ktq
--- reads what a model weighs (steps' records and chai.ktq.measure).
function M.weight_bytes(m)
  local mem = m:memory()
  return {total = mem.weights, by_format = mem.weights_by_format}
end

--- K and V cache bytes one token takes under the model's current head plan.
function M.kv_bytes_per_token(m)
  return m:memory().kv_cache_bytes_per_token
end

--- Trainable parameter names and the number of values they hold.
function M.trainable(m)
  local names, values = m:trainable()
  return names, values
end

--- Makes exactly `names` trainable (everything else frozen), but for matrices quantized since the
--- names were taken: they stay frozen.
function M.set_trainable(m, names)
  m:freeze()
  local f, keep = m:formats(), {}
  for _, n in ipairs(names) do
    if f[n] == nil or f[n] == "f32" then keep[#keep + 1] = n end
  end
  if #keep > 0 then m:unfreeze{names = keep} end
end

--- The layer (1-based) of a parameter name, or nil outside the decoder layers.
function M.layer_of(name)
  local l = name:match("%.layers%.(%d+)%.")
  return l and tonumber(l) + 1 or nil
end

--- Whether the model runs online head clustering (batches of one only).
function M.online(m)
  return m:heads().mode == "online"
end

--- Loss (and accuracy for classification) of a model on encoded rows.
function M.evaluate(m, rows, kind)
  local bs = M.online(m) and 1 or 64
  if kind == "zeroshot" then
    return train.evaluate(m, rows, {head = "lm", batch_size = bs})
  end
  return train.evaluate(m, rows, {batch_size = bs})
end

--- Checks an options table against known keys; raises naming the first unknown key.
function M.check_opts(fname, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("%s: options must be a table, got %s"):format(fname, type(opts)), 0) end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      error(("%s: unknown option '%s' (known: %s)"):format(fname, tostring(k), table.concat(names, ", ")), 0)
    end
  end
  return opts
end

--- A number in [lo, hi] (open ends when lo_open / hi_open), or an error naming the value.
function M.check_range(where, v, lo, hi, lo_open, hi_open)
  local ok = type(v) == "number" and v == v
    and (lo_open and v > lo or (not lo_open and v >= lo))
    and (hi_open and v < hi or (not hi_open and v <= hi))
  if not ok then
    error(("%s must be in %s%s, %s%s, got %s"):format(where, lo_open and "(" or "[", tostring(lo),
                                                     tostring(hi), hi_open and ")" or "]", tostring(v)), 0)
  end
  return v
end

function M.check_count(where, v)
  if math.type(v) ~= "integer" or v < 1 then
    error(("%s must be a positive integer, got %s"):format(where, tostring(v)), 0)
  end
  return v
end

return M
