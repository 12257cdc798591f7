-- chai.optim (also chai.train.optimizer): an optimizer (AdamW or SGD, one fused C pass per
-- tensor) with its learning-rate schedule and global-norm gradient clipping.
--
--   local opt = chai.train.optimizer{kind="adamw", lr=3e-4, weight_decay=0.01, betas={0.9,0.999},
--                                    eps=1e-8, schedule="linear", warmup=100, total_steps=2000,
--                                    min_lr_ratio=0, max_grad_norm=1.0}
--   local info = opt:step(m:params(), m:grads())  --> {lr=, grad_norm=, clip=}
--
-- SGD takes momentum=, dampening=, nesterov= instead of betas/eps. Biases and LayerNorm weights get
-- no weight decay (override per name with no_decay={[name]=true|false}). Parameters without a
-- gradient (frozen) are skipped and keep their state. opt:state() / opt:load_state(state) give and
-- take everything needed to continue bit-identically: {tensors = {name = tensor}, step = n}.
local core = require "chai.core"

local M = {}
local Optimizer = {}
Optimizer.__index = Optimizer

local known = {kind = true, lr = true, weight_decay = true, betas = true, eps = true,
               momentum = true, dampening = true, nesterov = true, schedule = true, warmup = true,
               total_steps = true, min_lr_ratio = true, max_grad_norm = true, no_decay = true}

function M.new(opts)
  if type(opts) ~= "table" then error("chai.train.optimizer: options must be a table", 2) end
  for k in pairs(opts) do
    if not known[k] then error("chai.train.optimizer: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local kind = opts.kind or "adamw"
  local only = {betas = "adamw", eps = "adamw", momentum = "sgd", dampening = "sgd", nesterov = "sgd"}
  for k, owner in pairs(only) do
    if opts[k] ~= nil and kind ~= owner then
      error(string.format("chai.train.optimizer: option '%s' is for %s, not %s", k, owner, tostring(kind)), 2)
    end
  end
  local lr = opts.lr or (kind == "sgd" and 0.1 or 1e-3)
  if type(lr) ~= "number" or lr < 0 or lr ~= lr then
    error("chai.train.optimizer: lr must be a number >= 0, got " .. tostring(lr), 2)
  end
  local ok, ud = pcall(core.optimizer, kind, {weight_decay = opts.weight_decay, betas = opts.betas,
                       eps = opts.eps, momentum = opts.momentum, dampening = opts.dampening,
                       nesterov = opts.nesterov})
  if not ok then error("chai.train.optimizer: " .. tostring(ud), 2) end
  local sched = {kind = opts.schedule or "constant", warmup = opts.warmup or 0,
                 total = opts.total_steps or 0, min_ratio = opts.min_lr_ratio or 0}
  local ok2, err = pcall(core.schedule_factor, sched, 0)
  if not ok2 then error("chai.train.optimizer: " .. tostring(err), 2) end
  local mgn = opts.max_grad_norm or 0
  if type(mgn) ~= "number" or mgn < 0 then
    error("chai.train.optimizer: max_grad_norm must be a number >= 0 (0 = off), got " .. tostring(mgn), 2)
  end
  return setmetatable({core = ud, kind = kind, base_lr = lr, schedule = sched, max_grad_norm = mgn,
                       no_decay = opts.no_decay, step_count = 0}, Optimizer)
end

--- The learning rate of optimizer step `step` (0-based; default: the next one).
function Optimizer:lr(step)
  return self.base_lr * core.schedule_factor(self.schedule, step or self.step_count)
end

--- One update from grads (name → tensor; missing names are frozen). opts.scale multiplies the
--- gradients first (1/k after accumulating k batches); clipping sees the scaled norm. Raises,
--- leaving every parameter unchanged, when the gradient norm is NaN or Inf.
function Optimizer:step(params, grads, opts)
  local scale = opts and opts.scale or 1
  local norm, finite = core.grad_norm(grads)
  if not finite then
    error(string.format("chai.train: the gradient norm is %s at step %d; parameters not updated",
                        tostring(norm), self.step_count + 1), 2)
  end
  norm = norm * scale
  local clip = core.clip_factor(norm, self.max_grad_norm)
  local lr = self:lr()
  self.core:step(params, grads, {lr = lr, grad_scale = clip * scale, no_decay = self.no_decay})
  self.step_count = self.step_count + 1
  return {lr = lr, grad_norm = norm, clip = clip}
end

function Optimizer:state()
  return {tensors = self.core:state(), step = self.step_count}
end

function Optimizer:load_state(state)
  if type(state) ~= "table" or type(state.tensors) ~= "table" or math.type(state.step) ~= "integer" then
    error("chai.train.optimizer: load_state expects {tensors = {...}, step = integer}", 2)
  end
  self.core:load_state(state.tensors)
  self.step_count = state.step
end

function Optimizer:config()
  local c = self.core:config()
  c.lr = self.base_lr
  c.schedule = self.schedule.kind
  c.warmup = self.schedule.warmup
  c.total_steps = self.schedule.total
  c.min_lr_ratio = self.schedule.min_ratio
  c.max_grad_norm = self.max_grad_norm
  return c
end

function Optimizer:__tostring()
  return string.format("chai.train.optimizer %s lr %g (%s) step %d", self.kind, self.base_lr,
                       self.schedule.kind, self.step_count)
end

return M
