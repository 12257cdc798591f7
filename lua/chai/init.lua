-- chai: the Lua face of the engine (placeholder until the binding's module lands on main).
local core = require "chai.core"
return {version = core.version}
