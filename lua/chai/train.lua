-- chai.train: training from Lua. The numbers run in C (losses, backward, the fused optimizer
-- update); this module wires them together.
--   chai.train.optimizer{...}   an optimizer with schedule and clipping (lua/chai/optim.lua)
--   chai.train.schedule{kind=, warmup=, total=, min_ratio=}(step) → lr factor
local core = require "chai.core"
local optim = require "chai.optim"

local M = {}

M.optimizer = optim.new

--- A schedule as a function step → factor (0-based steps; Hugging Face's warmup schedules).
function M.schedule(opts)
  local s = {kind = opts.kind or "constant", warmup = opts.warmup or 0, total = opts.total or 0,
             min_ratio = opts.min_ratio or 0}
  core.schedule_factor(s, 0) -- checks the fields now
  return function(step) return core.schedule_factor(s, step) end
end

return M
