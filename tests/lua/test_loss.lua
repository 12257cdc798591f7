-- chai.loss (cross-entropy, KD) and chai.train.optimizer from Lua, against the PyTorch fixtures of
-- tests/fixtures/train: losses and gradients, an AdamW trajectory with clipping and a schedule,
-- state round trips, and the error messages (1-based rows, named options).
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"
local json = require("chai.core").json

local fx = (os.getenv("CHAI_TEST_FIXTURES") or (dir .. "../fixtures")) .. "/train/"
local f = assert(io.open(fx .. "manifest.json", "rb"))
local manifest = json.decode(f:read("a"))
f:close()

local function load(name) return chai.load_npy(fx .. name) end

-- ---- losses against torch ----
local n = 0
for _, c in ipairs(manifest.kd) do
  local s, t, y, g = load(c.student), load(c.teacher), load(c.labels), load(c.grad)
  local mask = c.mask and load(c.mask) or nil
  local loss, d, info
  if c.alpha == 0 then
    loss, d, info = chai.loss.cross_entropy(s, y, {label_smoothing = c.label_smoothing, mask = mask})
  else
    loss, d, info = chai.loss.kd(s, t, y, {T = c.T, alpha = c.alpha, mask = mask,
                                           label_smoothing = c.label_smoothing})
  end
  T.close(loss, c.loss, 2e-6 * math.max(1, math.abs(c.loss)), c.name .. " loss")
  T.eq(info.count, c.count, c.name .. " count")
  T.eq(d:shape(), s:shape(), c.name .. " grad shape")
  T.check(chai.allclose(d, g, {atol = 1e-7, rtol = 1e-4}), c.name .. " grad")
  n = n + 1
end
T.eq(n, #manifest.kd, "all kd cases")

-- (B,T,V) logits with (B,T) labels are rows too; tables work as inputs
do
  local logits = chai.tensor({{{1, 2, 3}, {0, 0, 0}}, {{3, 2, 1}, {1, 1, 1}}})
  local loss, d, info = chai.loss.cross_entropy(logits, {{2, -100}, {0, 1}})
  T.eq(info.count, 3, "3d count")
  T.eq(d:shape(), {2, 2, 3}, "3d grad shape")
  local want = (2 * (math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3) + math.log(3)) / 3
  T.close(loss, want, 1e-6, "3d loss")
  T.close(d:totable()[1][2], {0, 0, 0}, 0, "ignored row has no gradient")
  -- i64 labels
  local l2 = chai.loss.cross_entropy(logits, chai.tensor({{2, -100}, {0, 1}}, "i64"))
  T.close(l2, loss, 0, "i64 labels")
  -- pure KD without labels, and KD of a distribution against itself is 0
  local l3, d3 = chai.loss.kd(logits, logits, nil, {alpha = 1, T = 3})
  T.close(l3, 0, 1e-7, "self-KD")
  T.check(chai.allclose(d3, chai.zeros({2, 2, 3}), {atol = 1e-7}), "self-KD grad")
end

-- errors name the bad value and a 1-based row
T.raises(function() chai.loss.cross_entropy({{1, 2}, {3, 4}}, {0, 2}) end,
         {"cross_entropy: label 2 in row 2 is outside 0..1"})
T.raises(function() chai.loss.kd({{1, 2}}, {{1, 2}}, {5}) end, {"kd: label 5 in row 1"})
T.raises(function() chai.loss.kd({{1, 2}}, {{1, 2, 3}}, {0}) end, {"teacher logits are (1,3)"})
T.raises(function() chai.loss.cross_entropy({{1, 2}}, {0, 1}) end, {"labels has shape (2)", "1 rows"})
T.raises(function() chai.loss.kd({{1, 2}}, {{1, 2}}, {0}, {T = 0}) end, {"temperature T", "got 0"})
T.raises(function() chai.loss.kd({{1, 2}}, {{1, 2}}, {0}, {alpha = 2}) end, {"alpha must be in 0..1"})
T.raises(function() chai.loss.kd({{1, 2}}, {{1, 2}}, {0}, {temperature = 2}) end,
         {"unknown option 'temperature'"})
T.raises(function() chai.loss.kd({{1, 2}}, {{1, 2}}, nil, {alpha = 0.5}) end, {"needs targets"})
T.raises(function() chai.loss.kd({{1, 2}}, nil, {0}) end, {"teacher logits are required"})
T.raises(function() chai.loss.cross_entropy(chai.tensor({{1, 2}}, "i32"), {0}) end, {"must be f32"})

-- ---- the optimizer against torch ----
local function trajectory(c, stop_at, resume_state)
  local params, names = {}, {}
  for _, p in ipairs(c.params) do
    params[p.name] = load(p.init)
    names[#names + 1] = p.name
  end
  local opts = {kind = c.kind, lr = c.lr, weight_decay = c.weight_decay, schedule = c.schedule.kind,
                warmup = c.schedule.warmup, total_steps = c.schedule.total,
                max_grad_norm = c.max_norm > 0 and c.max_norm or nil}
  if c.kind == "adamw" then
    opts.betas, opts.eps = c.betas, c.eps
  else
    opts.momentum, opts.dampening, opts.nesterov = c.momentum, c.dampening, c.nesterov
  end
  local opt = chai.train.optimizer(opts)
  local first = 0
  if resume_state then
    opt:load_state(resume_state.opt)
    for k, v in pairs(resume_state.params) do params[k] = chai.tensor(v) end
    first = resume_state.opt.step
  end
  local grads_all = {}
  for _, k in ipairs(names) do grads_all[k] = load(("opt_%s_%s_grads.npy"):format(c.name, k)) end
  for step = first, (stop_at or c.steps) - 1 do
    local grads = {}
    for _, k in ipairs(names) do
      local gt = grads_all[k]:totable()[step + 1]
      grads[k] = chai.tensor(gt)
    end
    local info = opt:step(params, grads)
    T.close(info.lr, c.lrs[step + 1], 1e-12, c.name .. " lr")
    if c.max_norm > 0 then
      T.close(info.grad_norm, c.grad_norms[step + 1], 1e-5 * c.grad_norms[step + 1], c.name .. " norm")
    end
  end
  return params, opt, names
end

for _, c in ipairs(manifest.optim) do
  local params, _, names = trajectory(c)
  for _, k in ipairs(names) do
    local want = load(("opt_%s_%s_after.npy"):format(c.name, k)):totable()[c.steps]
    T.check(chai.allclose(params[k], want, {atol = 1e-7, rtol = 2e-6}), c.name .. " " .. k)
  end
  -- stop halfway, carry the state over to a new optimizer, finish: the same bits
  local half = c.steps // 2
  local p1, opt1 = trajectory(c, half)
  local st = opt1:state()
  local saved = {}
  for k, v in pairs(p1) do saved[k] = v:totable() end
  local p2 = trajectory(c, nil, {opt = st, params = saved})
  for _, k in ipairs(names) do
    T.eq(p2[k]:totable(), params[k]:totable(), c.name .. " resumed " .. k)
  end
end

-- optimizer errors
T.raises(function() chai.train.optimizer{kind = "adam"} end, {"unknown kind 'adam'"})
T.raises(function() chai.train.optimizer{lr = -1} end, {"lr must be a number >= 0"})
T.raises(function() chai.train.optimizer{betas = {0.9}} end, {"betas must be a table of two numbers"})
T.raises(function() chai.train.optimizer{schedule = "linear", warmup = 10, total_steps = 5} end,
         {"total_steps > warmup_steps"})
T.raises(function() chai.train.optimizer{momentum = 0.9} end, {"option 'momentum' is for sgd"})
T.raises(function() chai.train.optimizer{kind = "sgd", betas = {0.9, 0.99}} end, {"option 'betas' is for adamw"})
T.raises(function() chai.train.optimizer{warmpu = 3} end, {"unknown option 'warmpu'"})
do
  local opt = chai.train.optimizer{lr = 0.1}
  local p = {w = chai.tensor({1, 2})}
  T.raises(function() opt:step(p, {w = chai.tensor({1, 0 / 0})}) end,
           {"gradient norm is", "parameters not updated"})
  T.eq(p.w:totable(), {1, 2}, "no update on a NaN gradient")
  T.raises(function() opt:step(p, {v = chai.tensor({1, 1})}) end, {"gradient v has no parameter"})
  T.raises(function() opt:step(p, {w = chai.tensor({1, 1, 1})}) end,
           {"gradient w has 3 values but the parameter has 2"})
  opt:step(p, {w = chai.tensor({1, -1})})
  T.close(p.w:totable(), {1 * (1 - 0.001) - 0.1, 2 * (1 - 0.001) + 0.1}, 1e-6, "first AdamW step")
  T.raises(function() opt:step({w = chai.tensor({1, 2, 3})}, {w = chai.tensor({1, 1, 1})}) end,
           {"parameter w has 3 elements but its optimizer state has 2"})
  T.raises(function() opt:load_state({tensors = {["w.momentum_buffer"] = chai.zeros({2})}, step = 1}) end,
           {"'w.momentum_buffer' is not a state of adamw"})
  T.check(tostring(opt):find("adamw", 1, true), "tostring")
  T.eq(opt:config().kind, "adamw", "config")
end
T.close(chai.train.schedule{kind = "cosine", warmup = 2, total = 6}(4), 0.5, 1e-12, "schedule fn")

T.finish()
