-- GEMM benchmark: chai.matmul GFLOP/s at 512/1024/2048 beside raw cblas_sgemm in the same process,
-- with the OpenBLAS core chai picks and with OpenBLAS's own default choice, and PyTorch's torch.mm
-- on the same machine when /usr/bin/python3 has torch.
--   chai script scripts/bench/gemm.lua [--threads N] [--reps R]
-- Each configuration runs in a child process, because OpenBLAS fixes its kernel when it loads.
local chai = require "chai"
local bench = require("chai.core").bench

local opts = {threads = 2, reps = 7, child = nil}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--threads" then opts.threads = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--reps" then opts.reps = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--child" then opts.child = true
  else error("gemm.lua: unknown option '" .. a .. "' (use --threads N, --reps R)") end
  i = i + 1
end
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

local picked = run_child("")
local default = run_child("CHAI_BLAS_CORE=openblas")
local torch = torch_gflops()

print(string.format("GEMM, %d threads, median of %d runs, GFLOP/s (OPENBLAS_CORETYPE unset)", opts.threads, opts.reps))
print(string.format("%-6s %-12s %10s %10s %7s | %-12s %10s | %10s %8s",
  "n", "chai core", "chai", "raw sgemm", "ratio", "default core", "raw sgemm", "torch.mm", "chai/pt"))
for _, n in ipairs(sizes) do
  local p, d, t = picked[n], default[n], torch[n]
  print(string.format("%-6d %-12s %10.1f %10.1f %6.1f%% | %-12s %10.1f | %10s %8s",
    n, p.core, p.chai, p.raw, 100 * p.chai / p.raw, d.core, d.raw,
    t and string.format("%.1f", t) or "n/a", t and string.format("%.2fx", p.chai / t) or "n/a"))
end
