-- Decode kernels of each weight format against the memory bandwidth: one token through the
-- matrices of an opt-125m-shaped decoder (12 layers of Q, K, V, out 768×768, fc1 3072×768, fc2
-- 768×3072; about 85 MB in int8, far beyond the caches), rows shared by the threads in whole
-- 16-row blocks, the token quantized per input as decode would. The figure is the share of the
-- bandwidth bound of the matrices' own bytes (payload and scales): bytes / seconds / bandwidth,
-- paired as in opt_infer.lua (each timing followed at once by a streaming-read bandwidth reading;
-- the median of the per-repetition ratios, because this machine's bandwidth drifts).
--   chai script scripts/bench/qdecode.lua [--threads N] [--reps R] [--formats f32,f16,bf16,int8,int4]
local chai = require "chai"
local bench = require("chai.core").bench

local opts = {threads = 2, reps = 7, formats = "f32,f16,bf16,int8,int4"}
for k, v in pairs(require("chai.cli").options(arg, {
  prog = "qdecode.lua",
  usage = "usage: chai script scripts/bench/qdecode.lua [--threads N] [--reps R] [--formats LIST]",
  options = {threads = "count", reps = "count", formats = "string"},
})) do opts[k] = v end

local function median(xs)
  local c = {}
  for k, v in ipairs(xs) do c[k] = v end
  table.sort(c)
  return c[(#c + 1) // 2]
end

chai.threads(opts.threads)
local kernels = chai.cpu().kernels
print(string.format("Decode pass through opt-125m-shaped matrices, %d threads, %d paired repetitions",
                    opts.threads, opts.reps))
print(string.format("%-5s %-12s %9s %9s %9s %7s %7s", "fmt", "kernel", "MB", "ms/pass", "GB/s",
                    "bw GB/s", "share"))
for f in opts.formats:gmatch("[^,]+") do
  local times, bws, shares, bytes = {}, {}, {}, 0
  bench.qdecode(f, 12, 768, 3072, 1) -- warm-up
  for r = 1, opts.reps do
    local t, b = bench.qdecode(f, 12, 768, 3072, 3)
    local bw = chai.opt.read_bandwidth(512, 3)
    bytes = b
    times[r], bws[r], shares[r] = t, bw, b / t / (bw * 1e9)
  end
  local t = median(times)
  print(string.format("%-5s %-12s %9.1f %9.2f %9.1f %7.1f %6.0f%%", f,
                      (f == "f32" or f == "f16") and "rows-avx" or kernels[f], bytes / 1e6, t * 1e3,
                      bytes / t / 1e9, median(bws), 100 * median(shares)))
end
