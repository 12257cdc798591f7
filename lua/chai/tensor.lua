-- Pure-Lua tensor helpers: t:size(dim), chai.allclose(a, b [, {atol=, rtol=}]).
local M = {}

function M.install(chai, methods)
  -- t:size() is the shape table; t:size(d) the size of 1-based dim d (negative from the end).
  function methods.size(t, d)
    local shape = t:shape()
    if d == nil then return shape end
    if math.type(d) ~= "integer" then error("t:size: dim must be an integer, got " .. tostring(d), 2) end
    local i = d < 0 and #shape + 1 + d or d
    if i < 1 or i > #shape then
      error(("t:size: dim %d out of range for a %d-dim tensor"):format(d, #shape), 2)
    end
    return shape[i]
  end

  -- True when a and b (tensors, or nested tables/numbers) have the same shape and every pair
  -- satisfies |a - b| <= atol + rtol * |b| (defaults: atol 1e-6, rtol 1e-5; NaNs never match).
  function chai.allclose(a, b, opts)
    opts = opts or {}
    for k in pairs(opts) do
      if k ~= "atol" and k ~= "rtol" then
        error(("chai.allclose: unknown option '%s' (known: atol, rtol)"):format(tostring(k)), 2)
      end
    end
    local atol, rtol = opts.atol or 1e-6, opts.rtol or 1e-5
    local ta = chai.is_tensor(a) and a:totable() or a
    local tb = chai.is_tensor(b) and b:totable() or b
    local function close(x, y)
      if type(x) == "number" and type(y) == "number" then
        return math.abs(x - y) <= atol + rtol * math.abs(y)
      end
      if type(x) ~= "table" or type(y) ~= "table" or #x ~= #y then return false end
      for i = 1, #x do
        if not close(x[i], y[i]) then return false end
      end
      return true
    end
    return close(ta, tb)
  end
end

return M
