-- chai: the Lua face of the engine. `local chai = require "chai"` returns this table; nothing is
-- made global. The C module chai.core provides the tensors, ops and system functions; pure-Lua
-- helpers live beside this file (lua/chai/*.lua) and are required here.
local core = require "chai.core"

local chai = {}
for name, value in pairs(core) do
  if name ~= "tensor_methods" then chai[name] = value end
end

require("chai.tensor").install(chai, core.tensor_methods)
chai.heads = require "chai.heads"

return chai
