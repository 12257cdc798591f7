-- A CHAI-KTQ recipe to copy and edit: compress a trained SST-2 classifier, repair it, and measure
-- what each step did on the validation split.
--
--   chai script examples/ktq_recipe.lua [MODEL_DIR]
--
-- MODEL_DIR is a trained classifier (for instance the student experiments/train_sst2.lua saves in
-- chai.train.models_dir()). Without one, the file builds a tiny random classifier so that it runs
-- anywhere in seconds (the test suite runs it that way): the numbers then mean nothing.
-- Data: SST-2 and the OPT tokenizer from $CHAI_DATA_DIR. See docs/ktq.md.
local chai = require "chai"
local ktq = chai.ktq

local dir = ...
local quick = dir == nil
local model
if quick then
  chai.threads(1)
  model = chai.opt.create({vocab_size = 50272, hidden_size = 32, num_hidden_layers = 2,
                           num_attention_heads = 4, ffn_dim = 64, max_position_embeddings = 128,
                           num_labels = 2}, {seed = 1})
else
  model = chai.opt.load(dir)
end
local task = ktq.task("sst2")

-- The recipe: steps run in this order. Calibration, sensitivity and early stopping use seeded,
-- disjoint slices of the TRAIN split (data = sizes); the validation split is read only by
-- chai.ktq.measure below. Add "quant" where you want quantization once your build has it.
local recipe = {
  seed = 1,
  data = quick and {calibration = 8, sensitivity = 8, heldout = 8} -- the test data's 40 rows
              or {calibration = 128, sensitivity = 128, heldout = 500},
  steps = {"chai", "kd", "target"},
  chai = {mode = "static", min_layer = 2},               -- CHAI on layers 2.., k from the elbow
  kd = {alpha = 0.5, T = 2, steps = quick and 10 or 400}, -- distil the unmodified model
  target = {fraction = 0.5, sensitivity = "fisher",       -- the most sensitive half of the layers
            steps = quick and 10 or 400},
}
-- A step of your own is any function(model, ctx, opts) → model, record.
recipe.steps[#recipe.steps + 1] = function(m, ctx)
  return m, {what = ("checked: %d layers for task %s"):format(m.config.num_hidden_layers, ctx.task.name)}
end

local reference = ktq.clone(model) -- the unmodified model, kept to compare against
local compressed, records = ktq.apply(model, recipe, task)
for _, r in ipairs(records) do
  print(("%-8s %6.1f s  %s"):format(r.step, r.seconds, r.what or ""))
end

local m = ktq.measure(compressed, task, {reference = reference, limit = quick and 64 or nil,
                                         repeats = quick and 1 or 3})
print(("accuracy %.2f%% [%.2f, %.2f], %+.2f points against the unmodified model [%+.2f, %+.2f]"):format(
  100 * m.accuracy.value, 100 * m.accuracy.low, 100 * m.accuracy.high,
  100 * m.paired.difference, 100 * m.paired.low, 100 * m.paired.high))
print(("latency p50 %.2f ms, %.0f sentences/s at batch 16, KV %d bytes/token (%.0f%% of the original)"):format(
  m.latency_ms.p50, m.throughput[1].sentences_per_s, m.kv_bytes_per_token, 100 * m.ratios.kv_bytes_per_token))
assert(m.accuracy.n > 0 and #records == 4)
