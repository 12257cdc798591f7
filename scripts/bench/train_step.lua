-- Training speed: one step of an opt-125m-shaped sequence classifier, chai against PyTorch in one
-- run, and what freezing saves in chai.
--
--   chai script scripts/bench/train_step.lua [--threads 2] [--reps 3] [--batch 8] [--seq 64]
--                                             [--dir /tmp/chai-bench-train125m] [--no-torch]
--                                             [--no-frozen]
--
-- One step = zero the gradients, forward, cross-entropy on the score head (last non-pad token),
-- backward through every parameter, global-norm clipping to 1.0, AdamW (lr 1e-4, weight decay 0.01,
-- none on biases and LayerNorms). Median of --reps timed steps after one warm-up step, f32,
-- --threads threads for both sides; peak RSS (VmHWM) of each side's process, which loads the same
-- weights (written once by chai to --dir as model.safetensors + config.json).
-- PyTorch runs tests/fixtures/opt_reference.py (Hugging Face's OPT re-implemented) under
-- /usr/bin/python3 with torch.set_num_threads(--threads), optimizer.zero_grad(set_to_none=True)
-- and torch.optim.AdamW (foreach off, its 1.13 default on CPU). Each side runs in child processes,
-- one per OpenBLAS core type; the best is reported with its setting.
-- Frozen (chai): the same step with the embeddings and the bottom half of the layers frozen, and
-- with only the top layer and the head trainable: time, and gradient memory.
local chai = require "chai"
local now = require("chai.core").bench.now

local opts = {threads = 2, reps = 3, batch = 8, seq = 64, dir = "/tmp/chai-bench-train125m",
              torch = true, frozen = true}
for k, v in pairs(require("chai.cli").options(arg, {
  prog = "train_step.lua",
  usage = "usage: chai script scripts/bench/train_step.lua [--threads N] [--reps R] [--batch N] " ..
          "[--seq N] [--dir DIR] [--no-torch] [--no-frozen] [--shape tiny]",
  -- --child chai|...: the child processes this script starts
  options = {threads = "count", reps = "count", batch = "count", seq = "count", dir = "string",
             no_torch = "flag", no_frozen = "flag", child = "string",
             shape = function(v) return v == "tiny" and v or nil, "the only other shape is tiny" end},
})) do opts[k] = v end
if opts.no_torch then opts.torch = false end
if opts.no_frozen then opts.frozen = false end

local OPT125M = {vocab_size = 50272, hidden_size = 768, num_hidden_layers = 12,
                 num_attention_heads = 12, ffn_dim = 3072, max_position_embeddings = 2048,
                 word_embed_proj_dim = 768, do_layer_norm_before = true, num_labels = 2}
-- --shape tiny: a small model for smoke tests of this script
local TINY = {vocab_size = 1000, hidden_size = 64, num_hidden_layers = 2, num_attention_heads = 4,
              ffn_dim = 256, max_position_embeddings = 128, num_labels = 2}

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local function peak_rss_mb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local kb = s:match("VmHWM:%s*(%d+)")
  return kb and tonumber(kb) / 1024
end

-- Deterministic ids in 3..(vocab-3); the last quarter of odd rows is padding (right-padded).
local function batch(B, T, V)
  local ids, mask, labels = {}, {}, {}
  for b = 1, B do
    ids[b], mask[b] = {2}, {1}
    local n = (b % 2 == 1) and (T - T // 4) or T
    for t = 2, T do
      if t <= n then ids[b][t], mask[b][t] = 3 + (b * 7919 + t * 104729) % (V - 6), 1
      else ids[b][t], mask[b][t] = 1, 0 end
    end
    labels[b] = b % 2
  end
  return ids, mask, labels
end

-- ---- children ---------------------------------------------------------------------------------

if opts.child == "chai" then
  chai.threads(opts.threads)
  local m = chai.opt.load(opts.dir, {quiet = true})
  local cfg = m.config
  local ids, mask, labels = batch(opts.batch, opts.seq, cfg.vocab_size)
  ids, mask = chai.tensor(ids, "i32"), chai.tensor(mask, "i32")
  local opt = chai.train.optimizer{kind = "adamw", lr = 1e-4, weight_decay = 0.01,
                                   max_grad_norm = 1.0}
  local params = m:params()
  local function step()
    m:zero_grad()
    m:forward_backward{input_ids = ids, attention_mask = mask, labels = labels, head = "classify"}
    opt:step(params, m:grads())
  end
  local function time()
    step()
    local ts = {}
    for _ = 1, opts.reps do
      local t = now()
      step()
      ts[#ts + 1] = now() - t
    end
    return median(ts)
  end
  print("step", time())
  print("rss", peak_rss_mb())
  print("grads", m:train_memory().grads)
  print("core", chai.cpu().blas_core)
  if opts.frozen then
    local L = cfg.num_hidden_layers
    local bottom = {}
    for l = 1, L // 2 do bottom[#bottom + 1] = l end
    m:freeze{parts = {"embeddings"}}
    m:freeze{layers = bottom}
    print("step_half", time())
    print("grads_half", m:train_memory().grads)
    m:freeze{}
    m:unfreeze{layers = {L}}
    m:unfreeze{parts = {"head"}}
    print("step_top", time())
    print("grads_top", m:train_memory().grads)
  end
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
  return ok and out or nil
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
local shape = opts.shape == "tiny" and TINY or OPT125M
if not exists(opts.dir .. "/model.safetensors") then
  io.write("writing a random ", opts.shape == "tiny" and "tiny" or "opt-125m-shaped",
           " classifier to ", opts.dir, " ... ")
  io.flush()
  local t = now()
  local m = chai.opt.create(shape, {seed = 1})
  m:save(opts.dir)
  m:free()
  print(string.format("%.1f s", now() - t))
end

local py = [[
import os, sys, time
sys.path.insert(0, sys.argv[1])
import torch
import opt_reference as ref
folder, threads, reps, B, T = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
model = ref.load_model(folder).train()
V = model.cfg.vocab_size
ids, mask, labels = [], [], []
for b in range(1, B + 1):
    n = T - T // 4 if b % 2 == 1 else T
    ids.append([2] + [3 + (b * 7919 + t * 104729) % (V - 6) if t <= n else 1 for t in range(2, T + 1)])
    mask.append([1] + [1 if t <= n else 0 for t in range(2, T + 1)])
    labels.append(b % 2)
ids, mask, labels = torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)
decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "layer_norm" in n)]
no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "layer_norm" in n]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                         {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)
def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model.classify(ids, mask), labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
step()
ts = []
for _ in range(reps):
    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
ts.sort()
print("step", ts[(len(ts) - 1) // 2])
import resource
print("rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print("torch", torch.__version__)
]]
local pyfile = os.tmpname() .. ".py"
do
  local f = assert(io.open(pyfile, "w"))
  f:write(py)
  f:close()
end
local fixtures = source .. "/tests/fixtures"
local function torch_run(core)
  local env = core and ("OPENBLAS_CORETYPE=" .. core) or "-u OPENBLAS_CORETYPE"
  return sh(string.format("env -u OPENBLAS_L2_SIZE %s OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d "
                          .. "/usr/bin/python3 %q %q %q %d %d %d %d 2>/dev/null", env, opts.threads,
                          opts.threads, pyfile, fixtures, opts.dir, opts.threads, opts.reps,
                          opts.batch, opts.seq))
end
local function chai_run(core, frozen)
  local env = core and ("OPENBLAS_CORETYPE=" .. core) or "-u OPENBLAS_CORETYPE"
  return sh(string.format("env -u OPENBLAS_L2_SIZE %s %q script %q --child chai --threads %d "
                          .. "--reps %d --batch %d --seq %d --dir %q %s", env, exe, self,
                          opts.threads, opts.reps, opts.batch, opts.seq, opts.dir,
                          frozen and "" or "--no-frozen"))
end

local cores = {false, "Haswell", "SkylakeX"}
local best = {}
local function keep(side, res, label)
  if res and res.step and (not best[side] or res.step < best[side].step) then
    res.label = label
    best[side] = res
  end
end
for k, core in ipairs(cores) do
  local res = chai_run(core or nil, opts.frozen and k == 1)
  if res then
    keep("chai", res, core or ("chai's choice (" .. tostring(res.core) .. ")"))
    if k == 1 then best.frozen = res end
  else
    print("chai run failed for core " .. tostring(core))
  end
  if opts.torch then keep("torch", torch_run(core or nil), core or "OpenBLAS default") end
end
os.remove(pyfile)

local c, t = best.chai, best.torch
print()
print(string.format("Training step, random %s classifier, B%d x T%d, AdamW, f32, %d threads",
                    opts.shape == "tiny" and "tiny" or "opt-125m-shaped", opts.batch, opts.seq,
                    opts.threads))
print(string.format("%-26s %12s %12s %8s", "", "chai", "PyTorch", "ratio"))
if c then
  print(string.format("%-26s %9.0f ms %9s %8s   %s / %s", "step time", c.step * 1e3,
                      t and string.format("%.0f ms", t.step * 1e3) or "-",
                      t and string.format("%.2fx", t.step / c.step) or "-", c.label,
                      t and t.label or "-"))
  print(string.format("%-26s %9.0f MB %9s %8s", "peak RSS", c.rss,
                      t and string.format("%.0f MB", t.rss) or "-",
                      t and string.format("%.2fx", t.rss / c.rss) or "-"))
end
local f = best.frozen
if f and f.step_half then
  print()
  print("chai with frozen parameters (same process, same core):")
  print(string.format("  %-44s %8.0f ms   gradients %6.0f MB", "all trainable", f.step * 1e3,
                      f.grads / 2 ^ 20))
  print(string.format("  %-44s %8.0f ms   gradients %6.0f MB   (%.0f%% of the time)",
                      "embeddings + bottom half of the layers frozen", f.step_half * 1e3,
                      f.grads_half / 2 ^ 20, 100 * f.step_half / f.step))
  print(string.format("  %-44s %8.0f ms   gradients %6.0f MB   (%.0f%% of the time)",
                      "only the top layer and the head trainable", f.step_top * 1e3,
                      f.grads_top / 2 ^ 20, 100 * f.step_top / f.step))
end
