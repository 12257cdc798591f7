-- chai.loss: cross-entropy and knowledge distillation on logits, each returning the mean loss (a
-- number), the gradient of that mean with respect to the (student) logits (a tensor shaped like
-- them), and a table {kl=, ce=, count=}. The work is done in C (engine/src/ops/loss_kd.c).
--
--   loss, dlogits = chai.loss.cross_entropy(logits, labels [, {ignore_index=-100,
--                                           label_smoothing=0, mask=}])
--   loss, dlogits = chai.loss.kd(student_logits, teacher_logits, labels [, {T=2, alpha=0.5,
--                                label_smoothing=0, ignore_index=-100, mask=}])
--
-- logits are f32 (…,V): (N,V) classifier scores or (B,T,V) language-model logits; labels hold one
-- class id per row (…), 0-based values as in the data, ignore_index rows skipped; mask (…) marks
-- rows that count (1) or not (0). KD = alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) +
-- (1−alpha)·CE(s, y); labels may be nil when alpha == 1. The mean is over counted rows.
local core = require "chai.core"

local M = {}

local function check_opts(opts, known, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(string.format("chai.loss.%s: options must be a table, got %s", fname, type(opts)), 3)
  end
  for k in pairs(opts) do
    if not known[k] then
      error(string.format("chai.loss.%s: unknown option '%s'", fname, tostring(k)), 3)
    end
  end
  return opts
end

function M.cross_entropy(logits, labels, opts)
  opts = check_opts(opts, {ignore_index = true, label_smoothing = true, mask = true},
                    "cross_entropy")
  if labels == nil then error("chai.loss.cross_entropy: labels are required", 2) end
  return core.loss_kd(logits, nil, labels, {T = 1, alpha = 0, ignore_index = opts.ignore_index,
                      label_smoothing = opts.label_smoothing, mask = opts.mask,
                      fname = "cross_entropy"})
end

function M.kd(student, teacher, labels, opts)
  opts = check_opts(opts, {T = true, alpha = true, label_smoothing = true, ignore_index = true,
                           mask = true}, "kd")
  if teacher == nil then error("chai.loss.kd: teacher logits are required", 2) end
  return core.loss_kd(student, teacher, labels, {T = opts.T or 2.0, alpha = opts.alpha or 0.5,
                      label_smoothing = opts.label_smoothing, ignore_index = opts.ignore_index,
                      mask = opts.mask, fname = "kd"})
end

return M
