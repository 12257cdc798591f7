-- chai.tiers: layers chosen by per-layer sensitivity scores (any source; higher = more sensitive).
-- One rule for chai.ktq (targeted fine-tuning, quantization tiers) and chai.quant.plan:
--
--   ranking   layers by score, highest first; equal scores keep layer order (the earlier layer
--             ranks as the more sensitive), as Python's stable sorted(..., reverse=True) does in
--             the CHAI-KTQ project.
--   count(f)  of n layers for a fraction f: ⌊f·n⌋ (the project's int(f·n)), but at least one layer
--             when f > 0, and none when f = 0. A tiny tolerance (1e-9) keeps 0.3·10 at 3.
--   top(scores, f)           the first count(f) layers of the ranking.
--   tiers(scores, {high, low}) the first count(high) layers are "high", the last count(low) of the
--             rest are "low" (high wins when the two overlap), the others "medium".
-- Layers are returned in increasing order; `order` gives the whole ranking.
local M = {}

local function check_scores(fname, scores)
  if type(scores) ~= "table" then
    error(("%s: scores must be a list of numbers (one per layer), got %s"):format(fname, type(scores)), 3)
  end
  local n = #scores
  if n == 0 then error(fname .. ": scores is empty (no layers)", 3) end
  for k in pairs(scores) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      error(("%s: scores must be a list 1..%d, it has key %s"):format(fname, n, tostring(k)), 3)
    end
  end
  for l = 1, n do
    local s = scores[l]
    if type(s) ~= "number" or s ~= s or s == math.huge or s == -math.huge then
      error(("%s: the score of layer %d is %s (a finite number is needed)"):format(fname, l, tostring(s)), 3)
    end
  end
  return n
end

local function check_fraction(fname, what, f, allow_zero)
  local ok = type(f) == "number" and f == f and f <= 1 and (f > 0 or (allow_zero and f == 0))
  if not ok then
    error(("%s: %s must be a fraction in %s, got %s"):format(fname, what,
          allow_zero and "[0, 1]" or "(0, 1]", tostring(f)), 3)
  end
end

--- The number of layers (of n) a fraction f in [0, 1] selects (see the rule above).
function M.count(f, n)
  if f <= 0 then return 0 end
  return math.max(1, math.min(n, math.floor(f * n + 1e-9)))
end

--- Layers ranked by score, highest first, ties in layer order.
function M.order(scores)
  local n = check_scores("chai.tiers.order", scores)
  local order = {}
  for l = 1, n do order[l] = l end
  table.sort(order, function(a, b)
    if scores[a] ~= scores[b] then return scores[a] > scores[b] end
    return a < b
  end)
  return order
end

local function sorted_copy(list)
  local out = {table.unpack(list)}
  table.sort(out)
  return out
end

--- The most sensitive layers: the first count(fraction) of the ranking, in increasing order, and
--- the ranking itself. fraction in (0, 1].
function M.top(scores, fraction)
  check_scores("chai.ktq.top", scores)
  check_fraction("chai.ktq.top", "fraction", fraction, false)
  local order = M.order(scores)
  local pick = {}
  for i = 1, M.count(fraction, #order) do pick[i] = order[i] end
  return sorted_copy(pick), order
end

--- {high = {layers}, medium = {layers}, low = {layers}, tier = {[layer] = "high"|"medium"|"low"},
--- order = ranking}. opts.high and opts.low are fractions in [0, 1] (defaults 0.3 and 0.3) whose
--- sum is at most 1.
function M.tiers(scores, opts)
  local fname = "chai.ktq.tiers"
  local n = check_scores(fname, scores)
  opts = opts or {}
  if type(opts) ~= "table" then error(fname .. ": options must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "high" and k ~= "low" then
      error(("%s: unknown option '%s' (known: high, low)"):format(fname, tostring(k)), 2)
    end
  end
  local high, low = opts.high or 0.3, opts.low or 0.3
  check_fraction(fname, "high", high, true)
  check_fraction(fname, "low", low, true)
  if high + low > 1 + 1e-12 then
    error(("%s: high + low must be at most 1, got %s + %s"):format(fname, tostring(high), tostring(low)), 2)
  end
  local order = M.order(scores)
  local n_high = M.count(high, n)
  local n_low = math.min(M.count(low, n), n - n_high)
  local out = {high = {}, medium = {}, low = {}, tier = {}, order = order}
  for i, l in ipairs(order) do
    local t = i <= n_high and "high" or (i > n - n_low and "low" or "medium")
    out.tier[l] = t
    out[t][#out[t] + 1] = l
  end
  out.high, out.medium, out.low = sorted_copy(out.high), sorted_copy(out.medium), sorted_copy(out.low)
  return out
end

return M
