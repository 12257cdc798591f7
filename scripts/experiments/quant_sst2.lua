-- Quantization on a chai-trained SST-2 classifier: GLUE SST-2 dev accuracy in f32 and in each
-- weight format, with the paired difference against f32 (95% paired-bootstrap interval over the
-- dev rows), the logits' KL divergence from f32, the weight bytes against f32, and the kernel
-- each format ran on. int8 everywhere (embeddings included), bf16, and int4 at groups 32/64/128
-- with `rtn` and `mse` scales (embeddings int8 in those rows), and int4 g64 everywhere.
--   chai script experiments/quant_sst2.lua [--model DIR] [--limit N] [--seed S] [--reps N]
--                                          [--json FILE]
--     --model   a trained classifier [chai.train.cached_model("sst2-opt-student"), made by
--               experiments/train_sst2.lua or the first run of experiments/search.lua]
--     --limit   evaluate only the first N dev rows (a smoke run)
--     --seed    the bootstrap's seed [0]; --reps its resamples [2000]
--     --json    also write every figure as JSON to FILE
-- Data (chai.data): $CHAI_DATA_DIR (sst2/, opt-tokenizer/), else the Hub. Prints a markdown table
-- (docs/benchmarks.md, "Quantization accuracy").
local chai = require "chai"
local cli = require "chai.cli"
local measure = require "chai.ktq_measure"

local PROG = "quant_sst2.lua"
local o = cli.options({...}, {
  prog = PROG,
  usage = "usage: chai script experiments/quant_sst2.lua [--model DIR] [--limit N] [--seed S] " ..
          "[--reps N] [--json FILE]",
  options = {model = "string", limit = "count", seed = "integer", reps = "count", json = "string"},
})
o.seed, o.reps = o.seed or 0, o.reps or 2000
local dir = o.model or cli.guard(PROG, chai.train.cached_model, "sst2-opt-student")
local f32 = cli.guard(PROG .. ": --model '" .. dir .. "'", chai.opt.load, dir)
local tok = cli.guard(PROG, chai.data.tokenizer)
local dev = chai.train.encode(cli.guard(PROG, chai.data.task, "sst2", "validation").rows, tok,
                              {max_length = 64})
if o.limit then
  local sub = {}
  for k = 1, math.min(o.limit, #dev) do sub[k] = dev[k] end
  dev = sub
end

-- Log-softmax of every dev row's scores, in dev order (batches of 64, as they come).
local function log_probs(m)
  local pad = m.config.pad_token_id or 1
  local out = {}
  for first = 1, #dev, 64 do
    local ids, mask = measure.collate({table.unpack(dev, first, math.min(first + 63, #dev))}, pad)
    local scores = m:classify(ids, {attention_mask = mask})
    for b, row in ipairs(scores:totable()) do
      local mx = row[1]
      for j = 2, #row do mx = math.max(mx, row[j]) end
      local z = 0
      for j = 1, #row do z = z + math.exp(row[j] - mx) end
      local lp = {}
      for j = 1, #row do lp[j] = row[j] - mx - math.log(z) end
      out[first + b - 1] = lp
    end
    scores:free()
  end
  return out
end

local function correct_of(lps)
  local c = {}
  for i, lp in ipairs(lps) do
    local best = 1
    for j = 2, #lp do if lp[j] > lp[best] then best = j end end
    c[i] = (best - 1 == dev[i].label) and 1 or 0
  end
  return c
end

local function weight_bytes(m)
  local total = 0
  for _, b in pairs(m:memory().weights_by_format) do total = total + b end
  return total
end

local ref_lp = log_probs(f32)
local ref_correct = correct_of(ref_lp)
local ref_bytes = weight_bytes(f32)
local kernels = chai.cpu().kernels or {}

local configs = {
  {name = "f32", spec = nil},
  {name = "bf16 everywhere", spec = {default = "bf16", embeddings = "bf16"}, kernel = "bf16"},
  {name = "int8 everywhere", spec = {default = "int8", embeddings = "int8"}, kernel = "int8"},
  {name = "int8 everywhere, mse", spec = {default = "int8", embeddings = "int8", method = "mse"},
   kernel = "int8"},
}
for _, method in ipairs({"rtn", "mse"}) do
  for _, g in ipairs({32, 64, 128}) do
    configs[#configs + 1] = {name = string.format("int4 g%d %s (embeddings int8)", g, method),
                             spec = {default = "int4", embeddings = "int8", group = g,
                                     method = method}, kernel = "int4"}
  end
end
for _, method in ipairs({"rtn", "mse"}) do -- the embeddings too (looked-up rows dequantized)
  configs[#configs + 1] = {name = "int4 g64 " .. method .. " everywhere",
                           spec = {default = "int4", embeddings = "int4", group = 64,
                                   method = method}, kernel = "int4"}
end

local rows = {}
for _, c in ipairs(configs) do
  local m = f32
  if c.spec then m = f32:clone():quantize(c.spec) end
  local lp = c.spec and log_probs(m) or ref_lp
  local correct = correct_of(lp)
  local n, right = #correct, 0
  for _, v in ipairs(correct) do right = right + v end
  local acc, lo, hi = measure.wilson(right, n)
  local diff, dlo, dhi = measure.paired_bootstrap(correct, ref_correct, o.reps, o.seed)
  local kl = 0 -- KL(f32 ‖ quantized), mean over rows, nats
  for i = 1, n do
    for j = 1, #lp[i] do kl = kl + math.exp(ref_lp[i][j]) * (ref_lp[i][j] - lp[i][j]) end
  end
  kl = kl / math.max(n, 1)
  local bytes = weight_bytes(m)
  rows[#rows + 1] = {name = c.name, spec = c.spec, accuracy = acc, accuracy_lo = lo,
                     accuracy_hi = hi, diff = diff, diff_lo = dlo, diff_hi = dhi, kl = kl,
                     weight_bytes = bytes, weight_share = bytes / ref_bytes,
                     kernel = c.kernel and kernels[c.kernel] or "f32 (OpenBLAS)", rows = n}
  io.stderr:write(string.format("%-36s acc %.4f  diff %+.4f  KL %.2e  bytes %.3f\n", c.name, acc,
                                diff, kl, bytes / ref_bytes))
  if m ~= f32 then m:free() end
end

print(string.format("Model: %s (%d dev rows; paired bootstrap %d resamples, seed %d)", dir,
                    #dev, o.reps, o.seed))
print("")
print("| weights | accuracy (95% CI) | Δ vs f32 (95% paired CI) | KL(f32 ‖ q) | weight bytes vs f32 | kernel |")
print("|---|---|---|---|---|---|")
for _, r in ipairs(rows) do
  print(string.format("| %s | %.2f%% (%.2f–%.2f) | %+.2f (%+.2f … %+.2f) | %.2e | %.1f%% | %s |",
                      r.name, 100 * r.accuracy, 100 * r.accuracy_lo, 100 * r.accuracy_hi,
                      100 * r.diff, 100 * r.diff_lo, 100 * r.diff_hi, r.kl,
                      100 * r.weight_share, r.kernel))
end
if o.json then
  local f = assert(io.open(o.json, "w"))
  f:write(chai.json.encode({model = dir, dev_rows = #dev, reps = o.reps, seed = o.seed,
                            rows = rows}))
  f:close()
end
