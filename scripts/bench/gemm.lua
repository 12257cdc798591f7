-- GEMM benchmark: chai.matmul GFLOP/s at 512/1024/2048 beside raw cblas_sgemm in the same process,
-- with the OpenBLAS core chai picks, OpenBLAS's own default choice, the Haswell kernel some machines
-- here force through OPENBLAS_CORETYPE, and OpenBLAS's generic fallback; and PyTorch's torch.mm on
-- the same machine when /usr/bin/python3 has torch. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are unset
-- for every child except where a configuration sets them.
--   chai script scripts/bench/gemm.lua [--threads N] [--reps R]
-- Each configuration runs in a child process, because OpenBLAS fixes its kernel when it loads.
local chai = require "chai"
local bench = require("chai.core").bench

local opts = {threads = 2, reps = 7, child = nil}
for k, v in pairs(require("chai.cli").options(arg, {
  prog = "gemm.lua",
  usage = "usage: chai script scripts/bench/gemm.lua [--threads N] [--reps R]",
  options = {threads = "count", reps = "count", child = "flag"}, -- --child: one configuration
})) do opts[k] = v end
local sizes = {512, 1024, 2048}

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

if opts.child then
  chai.threads(opts.threads)
  local cpu = chai.cpu()
  for _, n in ipairs(sizes) do
    local a, b = chai.randn({n, n}, {seed = 1}), chai.randn({n, n}, {seed = 2})
    local c = chai.matmul(a, b); c:free()
    local times = {}
    for _ = 1, opts.reps do
      local t = bench.now()
      c = chai.matmul(a, b)
      times[#times + 1] = bench.now() - t
      c:free()
    end
    local chai_gflops = 2 * n ^ 3 / median(times) / 1e9
    local raw_gflops = bench.sgemm_raw(n, opts.reps)
    print(string.format("%d %.2f %.2f %s", n, chai_gflops, raw_gflops, cpu.blas_core))
    a:free(); b:free()
  end
  os.exit(0)
end

local self = arg[0]
-- the interpreter sits at the lowest negative index of `arg`, as in lua.c
local lowest = 0
while arg[lowest - 1] do lowest = lowest - 1 end
local exe = arg[lowest] or "chai"
local function run_child(env)
  local cmd = string.format("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE %s %q script %q --child --threads %d --reps %d",
                            env, exe, self, opts.threads, opts.reps)
  local p = assert(io.popen(cmd))
  local rows = {}
  for line in p:lines() do
    local n, c, r, core = line:match("^(%d+) (%S+) (%S+) (%S+)")
    if n then rows[tonumber(n)] = {chai = tonumber(c), raw = tonumber(r), core = core} end
  end
  assert(p:close(), "benchmark child failed: " .. cmd)
  return rows
end

local function torch_gflops()
  local py = [[
import sys, time, torch
torch.set_num_threads(int(sys.argv[1])); reps = int(sys.argv[2])
for n in (512, 1024, 2048):
    a = torch.randn(n, n); b = torch.randn(n, n); torch.mm(a, b)
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); torch.mm(a, b); ts.append(time.perf_counter() - t)
    ts.sort(); print(n, 2 * n ** 3 / ts[len(ts) // 2] / 1e9)
]]
  local path = os.tmpname()
  local f = assert(io.open(path, "w")); f:write(py); f:close()
  local p = io.popen(string.format("/usr/bin/python3 %q %d %d 2>/dev/null", path, opts.threads, opts.reps))
  local rows = {}
  for line in p:lines() do
    local n, g = line:match("^(%d+) (%S+)")
    if n then rows[tonumber(n)] = tonumber(g) end
  end
  p:close(); os.remove(path)
  return rows
end

local configs = {
  {"chai's choice (default)", ""},
  {"OpenBLAS's own choice", "CHAI_BLAS_CORE=openblas"},
  {"OPENBLAS_CORETYPE=Haswell", "OPENBLAS_CORETYPE=Haswell"},
  {"generic fallback (Prescott)", "OPENBLAS_CORETYPE=Prescott"},
}
local results = {}
for i, c in ipairs(configs) do results[i] = run_child(c[2]) end
local torch = torch_gflops()

print(string.format("GEMM n×n×n, %d threads, median of %d runs, GFLOP/s", opts.threads, opts.reps))
print(string.format("%-30s %-11s %6s %9s %9s %7s %9s %8s", "configuration", "core", "n", "chai",
                    "raw sgemm", "ratio", "torch.mm", "chai/pt"))
for i, c in ipairs(configs) do
  for _, n in ipairs(sizes) do
    local r, t = results[i][n], torch[n]
    print(string.format("%-30s %-11s %6d %9.1f %9.1f %6.1f%% %9s %8s", c[1], r.core, n, r.chai, r.raw,
      100 * r.chai / r.raw, t and string.format("%.1f", t) or "n/a",
      t and string.format("%.2fx", r.chai / t) or "n/a"))
  end
end
