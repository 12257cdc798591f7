-- chai: the Lua face of the engine. `local chai = require "chai"` returns this table; nothing is
-- made global. The C module chai.core provides the tensors, ops and system functions; pure-Lua
-- helpers live beside this file (lua/chai/*.lua) and are required here.
local core = require "chai.core"

local chai = {}
for name, value in pairs(core) do
  if name ~= "tensor_methods" and name ~= "mpi" then chai[name] = value end
end

require("chai.tensor").install(chai, core.tensor_methods)
chai.heads = require "chai.heads"

-- Submodules load on first use (chai.data, chai.eval, ...), so `require "chai"` stays cheap.
local submodules = {data = true, eval = true, opt = true, tokenizer = true, hub = true, heads = true,
                    train = true, loss = true, quant = true, search = true, report = true,
                    ktq = true, tiers = true, mpi = true, student = true}
setmetatable(chai, {__index = function(t, name)
  if submodules[name] then
    local m = require("chai." .. name)
    rawset(t, name, m)
    return m
  end
end})

return chai
