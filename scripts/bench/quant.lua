-- Quantized inference speed: chai's formats against PyTorch's best mode, on the same random
-- opt-125m-shaped weights, in one run.
--
--   chai script scripts/bench/quant.lua [--threads 2] [--reps 5] [--rounds 2]
--        [--formats f32,bf16,int8,int4] [--dir /tmp/chai-bench-opt125m] [--no-torch] [--no-rss]
--
-- Figures (median of --reps runs; --threads threads on both sides):
--   classify   B16 x T32 sequence classification, ms
--   prefill    B1 x T128 causal-LM forward with last-position logits, ms
--   decode     greedy tokens/s after a 32-token prompt, 64 new tokens: 63 / (time(64) - time(1))
-- chai runs each format of --formats (m:quantize{default = format}; int4: group 64, RTN) with the
-- weights copied out of the file (so every format streams fresh memory). The decode share is the
-- paired method of opt_infer.lua: each decode repetition is followed at once by a bandwidth reading,
-- and share = tokens/s × bytes read per token (m:decode_bytes, the format's own bytes, scales
-- included) / bandwidth, the median over repetitions.
-- PyTorch (tests/fixtures/opt_reference.py, /usr/bin/python3) runs three modes: f32, bf16 autocast
-- (torch.autocast("cpu", torch.bfloat16)) and int8 dynamic quantization
-- (torch.ao.quantization.quantize_dynamic on every nn.Linear, fbgemm); its best mode per figure is
-- the peer; each PyTorch mode runs under OpenMP's default wait policy and under passive, keeping
-- its best. --rounds rounds alternate chai and PyTorch so both see the same machine load; each side
-- keeps its best round. Also: chai's peak RSS while loading the fp16 pytorch_model.bin with
-- {quant = {default = "int8"}}, against the quantized model's bytes.
local chai = require "chai"
local now = require("chai.core").bench.now

local opts = {threads = 2, reps = 5, rounds = 2, dir = "/tmp/chai-bench-opt125m", torch = true,
              rss = true, formats = {"f32", "bf16", "int8", "int4"}}
for k, v in pairs(require("chai.cli").options(arg, {
  prog = "quant.lua",
  usage = "usage: chai script scripts/bench/quant.lua [--threads N] [--reps R] [--rounds N] " ..
          "[--formats f32,bf16,int8,int4] [--dir DIR] [--no-torch] [--no-rss]",
  -- --child chai|rss and --format F: the child processes this script starts
  options = {threads = "count", reps = "count", rounds = "count", dir = "string",
             formats = "string", no_torch = "flag", no_rss = "flag", child = "string",
             format = "string"},
})) do opts[k] = v end
if opts.no_torch then opts.torch = false end
if opts.no_rss then opts.rss = false end
if type(opts.formats) == "string" then
  local list = {}
  for f in opts.formats:gmatch("[^,]+") do list[#list + 1] = f end
  opts.formats = list
end

local OPT125M = {vocab_size = 50272, hidden_size = 768, num_hidden_layers = 12,
                 num_attention_heads = 12, ffn_dim = 3072, max_position_embeddings = 2048,
                 word_embed_proj_dim = 768, do_layer_norm_before = true}

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- Deterministic token ids in 3..50002 (no pad, no eos); the same as PyTorch's below.
local function ids(B, T, salt)
  local r = {}
  for b = 1, B do
    r[b] = {2}
    for t = 2, T do r[b][t] = 3 + (b * 7919 + t * 104729 + salt) % 50000 end
  end
  return r
end

local function peak_rss_mb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local kb = s:match("VmHWM:%s*(%d+)")
  return kb and tonumber(kb) / 1024
end

-- ---- children ---------------------------------------------------------------------------------

if opts.child == "chai" then
  chai.threads(opts.threads)
  local m = chai.opt.load(opts.dir, {quiet = true, mmap = false})
  if opts.format ~= "f32" then m:quantize{default = opts.format, score = opts.format} end
  local function time(fn)
    fn()
    local ts = {}
    for _ = 1, opts.reps do
      local t = now()
      fn()
      ts[#ts + 1] = now() - t
    end
    return median(ts)
  end
  local cls = chai.tensor(ids(16, 32, 1), "i32")
  local pre = chai.tensor(ids(1, 128, 2), "i32")
  local prompt = ids(1, 32, 3)[1]
  print("classify", time(function() m:classify(cls) end))
  print("prefill", time(function() m:forward(pre, {last_only = true}) end))
  local bytes = m:decode_bytes(64) -- the average context over the 64 steps
  local function gen(n)
    local t = now()
    m:generate(prompt, {max_new_tokens = n, eos_token_id = -1})
    return now() - t
  end
  gen(64)
  local rates, bws, shares = {}, {}, {}
  for r = 1, opts.reps do
    local g1 = gen(1)
    local rate = 63 / (gen(64) - g1)
    local bw = chai.opt.read_bandwidth(512, 3)
    rates[r], bws[r], shares[r] = rate, bw, rate * bytes / (bw * 1e9)
  end
  print("decode", median(rates))
  print("share", median(shares))
  print("bandwidth", median(bws))
  print("bytes_per_token", bytes)
  print("weights", m:memory().weights)
  print("kernel", (chai.cpu().kernels or {})[opts.format] or "?")
  os.exit(0)
end

if opts.child == "rss" then
  local m = chai.opt.load(opts.dir .. "/fp16", {quiet = true, quant = {default = "int8"}})
  m:forward({{2, 100, 200}})
  print("rss", peak_rss_mb())
  print("weights", m:memory().weights)
  os.exit(0)
end

-- ---- the parent -------------------------------------------------------------------------------

local source = os.getenv("CHAI_SOURCE_DIR")
if not source then
  local here = debug.getinfo(1, "S").source:match("^@(.*)/scripts/bench/[^/]*$")
  source = here or "."
end
local lowest = 0
while arg[lowest - 1] do lowest = lowest - 1 end
local exe = arg[lowest] or "chai"
local self = arg[0]

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for line in p:lines() do
    local k, v = line:match("^(%S+)%s+(%S+)$")
    if k then out[k] = tonumber(v) or v end
  end
  local ok = p:close()
  return ok and out or nil, cmd
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
if not exists(opts.dir .. "/model.safetensors") then
  io.write("writing a random opt-125m-shaped model to ", opts.dir, " ... ")
  io.flush()
  local t = now()
  local m = chai.opt.create(OPT125M, {seed = 1})
  m:save(opts.dir)
  m:free()
  print(string.format("%.1f s", now() - t))
end

local py = [[
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import torch
import opt_reference as ref
folder, threads, reps, mode = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
fp16 = os.path.join(folder, "fp16")
if not os.path.exists(os.path.join(fp16, "pytorch_model.bin")):
    os.makedirs(fp16, exist_ok=True)
    sd = ref.load_safetensors(os.path.join(folder, "model.safetensors"))
    half = {k[len("model."):]: v.half() for k, v in sd.items() if k.startswith("model.decoder.")}
    torch.save(half, os.path.join(fp16, "pytorch_model.bin"))
    cfg = json.load(open(os.path.join(folder, "config.json")))
    cfg["torch_dtype"] = "float16"
    json.dump(cfg, open(os.path.join(fp16, "config.json"), "w"), indent=2, sort_keys=True)
if mode == "prepare":
    sys.exit(0)
model = ref.load_model(folder)
if mode == "int8":
    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if mode == "bf16" else None
def ids(B, T, salt):
    return torch.tensor([[2] + [3 + (b * 7919 + t * 104729 + salt) % 50000 for t in range(2, T + 1)]
                         for b in range(1, B + 1)])
def timed(fn):
    def run():
        if ctx:
            with ctx():
                fn()
        else:
            fn()
    run()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[(len(ts) - 1) // 2]
with torch.inference_mode():
    cls, pre, prompt = ids(16, 32, 1), ids(1, 128, 2), ids(1, 32, 3)[0].tolist()
    print("classify", timed(lambda: model.classify(cls)))
    print("prefill", timed(lambda: model.logits(pre, last_only=True)))
    g1 = timed(lambda: model.greedy(prompt, 1, -1))
    g64 = timed(lambda: model.greedy(prompt, 64, -1))
    print("decode", 63 / (g64 - g1))
]]
local pyfile = os.tmpname() .. ".py"
do
  local f = assert(io.open(pyfile, "w"))
  f:write(py)
  f:close()
end
local fixtures = source .. "/tests/fixtures"
-- Benchmarks take OpenBLAS's own choice of core (a user's OPENBLAS_CORETYPE is unset).
local ENV = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
-- policy: OMP_WAIT_POLICY for PyTorch (nil: its default, spinning at barriers; "passive" sleeps);
-- each mode runs under both and keeps its best (they differ 2-4x here, in either direction).
local function torch_run(mode, policy, reps)
  return sh(string.format("%s %s OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d /usr/bin/python3 %q %q "
                          .. "%q %d %d %s 2>/dev/null", ENV,
                          policy and ("OMP_WAIT_POLICY=" .. policy) or "", opts.threads,
                          opts.threads, pyfile, fixtures, opts.dir, opts.threads, reps or opts.reps,
                          mode))
end
local function chai_run(format)
  return sh(string.format("%s %q script %q --child chai --format %s --threads %d --reps %d --dir %q",
                          ENV, exe, self, format, opts.threads, opts.reps, opts.dir))
end

-- The peer must be there: a benchmark without it would print chai's figures with nothing to compare.
if opts.torch and not os.execute("/usr/bin/python3 -c 'import torch, numpy' 2>/dev/null") then
  io.stderr:write("quant.lua: PyTorch is not importable by /usr/bin/python3: install it with " ..
                  "`apt-get install python3-torch python3-numpy`, or pass --no-torch for chai alone\n")
  os.exit(1)
end

local rss
if opts.torch and torch_run("prepare") and opts.rss then
  rss = sh(string.format("%s %q script %q --child rss --dir %q", ENV, exe, self, opts.dir))
end

-- best[side][name][metric] = {v =, round =}
local best = {chai = {}, torch = {}}
local info = {}
local function keep(side, name, res)
  best[side][name] = best[side][name] or {}
  local b = best[side][name]
  for k, how in pairs({classify = "min", prefill = "min", decode = "max"}) do
    local v = res[k]
    if type(v) == "number" and (not b[k] or (how == "min" and v < b[k]) or (how == "max" and v > b[k])) then
      b[k] = v
    end
  end
end
local shares = {}
local torch_modes = {"f32", "bf16", "int8"}
print(string.format("%-8s %-10s %14s %14s %14s", "round", "side", "classify ms", "prefill ms",
                    "decode t/s"))
for round = 1, opts.rounds do
  for _, f in ipairs(opts.formats) do
    local res = chai_run(f)
    if res then
      keep("chai", f, res)
      info[f] = info[f] or res
      shares[f] = shares[f] or {}
      table.insert(shares[f], res.share)
      print(string.format("%-8d chai %-5s %14.1f %14.1f %14.1f", round, f, res.classify * 1e3,
                          res.prefill * 1e3, res.decode))
    else
      print("chai " .. f .. " run failed")
    end
  end
  for _, mode in ipairs(opts.torch and torch_modes or {}) do
    for _, policy in ipairs({false, "passive"}) do
      local res = torch_run(mode, policy or nil)
      local label = mode .. (policy and "/passive" or "")
      if res and res.classify then
        keep("torch", mode, res)
        print(string.format("%-8d torch %-12s %6.1f %14.1f %14.1f", round, label, res.classify * 1e3,
                            res.prefill * 1e3, res.decode))
      else
        print("torch " .. label .. " run failed")
      end
    end
  end
end
os.remove(pyfile)

-- PyTorch's best mode per figure.
local tbest = {}
for _, k in ipairs({"classify", "prefill", "decode"}) do
  for mode, b in pairs(best.torch) do
    local v = b[k]
    local better = v and (not tbest[k] or (k == "decode" and v > tbest[k].v) or (k ~= "decode" and v < tbest[k].v))
    if better then tbest[k] = {v = v, mode = mode} end
  end
end

print()
local cpu = chai.cpu()
local f = io.open("/proc/loadavg")
local load = f and f:read("l"):match("^(%S+ %S+ %S+)") or "?"
if f then f:close() end
print(string.format("Quantized OPT inference, random opt-125m shape, %d threads, %s family %s "
                    .. "model %s; load average %s", opts.threads, cpu.vendor or "?",
                    tostring(cpu.family), tostring(cpu.model), load))
if next(tbest) then
  print(string.format("PyTorch best: classify %.1f ms (%s), prefill %.1f ms (%s), decode %.1f t/s (%s)",
                      tbest.classify.v * 1e3, tbest.classify.mode, tbest.prefill.v * 1e3,
                      tbest.prefill.mode, tbest.decode.v, tbest.decode.mode))
end
print(string.format("%-6s %-14s %10s %7s %10s %7s %9s %7s %10s %9s", "format", "kernel",
                    "classify", "x torch", "prefill", "x torch", "decode", "x torch", "share", "MB/token"))
local f32 = best.chai.f32
for _, fmt in ipairs(opts.formats) do
  local c = best.chai[fmt]
  if c then
    local function ratio(k)
      if not tbest[k] or not c[k] then return "-" end
      return string.format("%.2fx", k == "decode" and c[k] / tbest[k].v or tbest[k].v / c[k])
    end
    local sh_list = {}
    for _, s in ipairs(shares[fmt] or {}) do sh_list[#sh_list + 1] = string.format("%.0f", s * 100) end
    print(string.format("%-6s %-14s %7.1f ms %7s %7.1f ms %7s %5.1f t/s %7s %9s%% %9.1f", fmt,
                        tostring(info[fmt].kernel), c.classify * 1e3, ratio("classify"),
                        c.prefill * 1e3, ratio("prefill"), c.decode, ratio("decode"),
                        table.concat(sh_list, "/"), info[fmt].bytes_per_token / 1e6))
  end
end
if f32 then
  for _, fmt in ipairs(opts.formats) do
    local c = best.chai[fmt]
    if c and fmt ~= "f32" then
      print(string.format("chai %s vs chai f32: classify %.2fx, prefill %.2fx, decode %.2fx", fmt,
                          f32.classify / c.classify, f32.prefill / c.prefill, c.decode / f32.decode))
    end
  end
end
if rss and rss.rss then
  print(string.format("peak RSS loading the fp16 pytorch_model.bin with quant {default = \"int8\"}: "
                      .. "%.0f MB; the quantized model holds %.0f MB (+%.0f MB)", rss.rss,
                      rss.weights / 1e6, rss.rss - rss.weights / 1048576))
end
print("(x torch > 1: chai faster than PyTorch's best mode for that figure; share: decode as % of "
      .. "bandwidth / bytes per token, by round)")
