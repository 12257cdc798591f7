-- Data-parallel training step: 1 process of 1 thread, 1 process of 2 threads, and 2 ranks
-- (mpirun -n 2) of 1 thread each, on the opt-125m-shaped training step of train_step.lua (same
-- model, same global batch B8 x T64, same step: zero the gradients, forward, cross-entropy on the
-- score head, backward, global-norm clipping, AdamW).
--
--   chai script scripts/bench/train_dist.lua [--reps 5] [--runs 3] [--batch 8] [--seq 64]
--                                            [--dir /tmp/chai-bench-train125m] [--shape tiny]
--                                            [--bucket-mb 8] [--mpirun mpirun]
--
-- Each configuration runs in its own processes, --runs times in turn (1t, 2t, 2 ranks, 1t, ...),
-- so that load from other jobs on a shared machine hits all of them alike; each run reports the
-- median of --reps timed steps after one warm-up step. The 2-rank step is what chai.train does
-- with distributed = true: each rank takes 4 of the 8 rows, padded to the batch's length, and the
-- gradients are summed in buckets while the backward runs; its exchange figures (bytes sent per
-- step and rank, seconds blocked in MPI) come from the reducer. Prints a table with every run
-- and the range (min–max of the runs' medians) per configuration.
local chai = require "chai"
local now = require("chai.core").bench.now

local opts = {reps = 5, runs = 3, batch = 8, seq = 64, dir = "/tmp/chai-bench-train125m",
              bucket_mb = 8, mpirun = "mpirun"}
for k, v in pairs(require("chai.cli").options(arg, {
  prog = "train_dist.lua",
  usage = "usage: chai script scripts/bench/train_dist.lua [--reps N] [--runs N] [--batch N] "
          .. "[--seq N] [--dir DIR] [--shape S] [--bucket-mb N] [--mpirun PATH] [--threads N]",
  -- --child: one configuration (the parent starts it)
  options = {reps = "count", runs = "count", batch = "count", seq = "count", dir = "string",
             shape = "string", bucket_mb = "number", mpirun = "string", threads = "count",
             child = "flag"},
})) do opts[k] = v end

local OPT125M = {vocab_size = 50272, hidden_size = 768, num_hidden_layers = 12,
                 num_attention_heads = 12, ffn_dim = 3072, max_position_embeddings = 2048,
                 word_embed_proj_dim = 768, do_layer_norm_before = true, num_labels = 2}
local TINY = {vocab_size = 1000, hidden_size = 64, num_hidden_layers = 2, num_attention_heads = 4,
              ffn_dim = 256, max_position_embeddings = 128, num_labels = 2}

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- train_step.lua's batch: deterministic ids, the last quarter of odd rows is right padding.
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

-- ---- a child: one process, or one rank of mpirun ------------------------------------------------

if opts.child then
  local mpi = chai.mpi
  chai.threads(opts.threads or 1)
  local m = chai.opt.load(opts.dir, {quiet = true})
  local B, T = opts.batch, opts.seq
  local ids, mask, labels = batch(B, T, m.config.vocab_size)
  local n, rank = mpi.size(), mpi.rank()
  local first, count = mpi.shard(B)
  local part = function(t) return table.move(t, first, first + count - 1, 1, {}) end
  local sids, smask, slabels = chai.tensor(part(ids), "i32"), chai.tensor(part(mask), "i32"),
                               part(labels)
  local opt = chai.train.optimizer{kind = "adamw", lr = 1e-4, weight_decay = 0.01,
                                   max_grad_norm = 1.0}
  local params = m:params()
  local red = n > 1 and mpi.reducer{bucket_mb = opts.bucket_mb} or nil
  local function step()
    m:zero_grad()
    m:forward_backward{input_ids = sids, attention_mask = smask, labels = slabels,
                       head = "classify", first_row = first, loss_count = n > 1 and B or 0,
                       sync = red}
    if red then red:finish() end
    opt:step(params, m:grads())
  end
  step()
  mpi.barrier()
  local ts, cpu = {}, {}
  local wait0, sent0 = red and red:stats().wait_seconds or 0, red and red:stats().sent_bytes or 0
  for _ = 1, opts.reps do
    mpi.barrier() -- the ranks start each step together
    local t, c = now(), os.clock()
    step()
    ts[#ts + 1], cpu[#cpu + 1] = now() - t, os.clock() - c
  end
  -- the step of the group is its slowest rank's
  local worst = {}
  for k, x in ipairs(ts) do worst[k] = x end
  local all = mpi.gather(ts, 1)
  if rank == 1 then
    for _, rts in ipairs(all) do
      for k, x in ipairs(rts) do worst[k] = math.max(worst[k], x) end
    end
    print("step", median(worst))
    print("cpu", median(cpu)) -- rank 1's process CPU time (all its threads)
    if red then
      local st = red:stats()
      print("sent_mb", (st.sent_bytes - sent0) / opts.reps / 2 ^ 20)
      print("wait", (st.wait_seconds - wait0) / opts.reps)
    end
    print("core", chai.cpu().blas_core)
  end
  if red then red:free() end
  os.exit(0)
end

-- ---- the parent ---------------------------------------------------------------------------------

local lowest = 0
while arg[lowest - 1] do lowest = lowest - 1 end
local exe = arg[lowest] or "chai"
local self = arg[0]

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

local common = string.format("script %q --child --reps %d --batch %d --seq %d --dir %q "
                             .. "--bucket-mb %g", self, opts.reps, opts.batch, opts.seq, opts.dir,
                             opts.bucket_mb)
-- Open MPI as root needs its consent; binding is off so two ranks never share a core by accident.
local mpi_env = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
local configs = {
  {name = "1 process, 1 thread", cmd = string.format("%q %s --threads 1", exe, common)},
  {name = "1 process, 2 threads", cmd = string.format("%q %s --threads 2", exe, common)},
  {name = "2 ranks x 1 thread", cmd = string.format("env %s OMP_NUM_THREADS=1 %s -n 2 "
                                                    .. "--bind-to core %q %s --threads 1",
                                                    mpi_env, opts.mpirun, exe, common)},
}
local results = {}
for run = 1, opts.runs do
  for k, c in ipairs(configs) do
    local res = sh(c.cmd .. " 2>/dev/null")
    results[k] = results[k] or {}
    if res and res.step then
      results[k][run] = res
      print(string.format("run %d  %-22s step %7.0f ms  cpu %7.0f ms%s", run, c.name,
                          res.step * 1e3, res.cpu * 1e3,
                          res.sent_mb and string.format("   sent %.0f MiB/rank, blocked %.0f ms",
                                                        res.sent_mb, res.wait * 1e3) or ""))
    else
      print(string.format("run %d  %-22s failed (%s)", run, c.name, c.cmd))
    end
  end
end

local tokens = opts.batch * opts.seq
print()
print(string.format("Training step, random %s classifier, global batch B%d x T%d, AdamW, f32; "
                    .. "%d runs x median of %d steps", opts.shape == "tiny" and "tiny"
                    or "opt-125m-shaped", opts.batch, opts.seq, opts.runs, opts.reps))
print(string.format("%-22s %20s %22s %18s", "", "step time (range)", "tokens/s (range)",
                    "vs 1 thread"))
local base = nil
for k, c in ipairs(configs) do
  local steps = {}
  for _, r in pairs(results[k]) do steps[#steps + 1] = r.step end
  if #steps > 0 then
    table.sort(steps)
    local lo, hi, med = steps[1], steps[#steps], median({table.unpack(steps)})
    base = base or med
    print(string.format("%-22s %8.0f (%4.0f-%4.0f) ms %9.0f (%5.0f-%5.0f) %14.2fx", c.name,
                        med * 1e3, lo * 1e3, hi * 1e3, tokens / med, tokens / hi, tokens / lo,
                        base / med))
  end
end

-- ---- the model: ring allreduce against the measured step ----------------------------------------
-- Bytes each rank sends (and receives) per step: 2·(N−1)/N × the f32 gradient (a ring allreduce;
-- chai's all-to-all + all-gather moves the same). Compute per step: the CPU time of the
-- one-thread step (on a shared machine the wall clock also counts other jobs' time slices), for
-- the larger models scaled by the parameters in the layers (the GEMM FLOPs; the embedding
-- gradient is a scatter, cheap to compute but exchanged in full).
if opts.shape == "tiny" or not results[1] or not next(results[1]) then return end
local one = {}
for _, r in pairs(results[1]) do one[#one + 1] = r.cpu end
local t1 = median(one)
local MODELS = { -- name, all parameters, parameters in the layers (Hugging Face configs)
  {"opt-125m", 125239296, 85054464},
  {"opt-350m", 331196416, 302309376},
  {"opt-1.3b", 1315758080, 1208598528},
}
local GBPS = {10, 25, 100}
print()
print(string.format("Modelled: ring allreduce of the f32 gradients against the step of one rank "
                    .. "(1 thread, B%d x T%d, measured %.0f ms CPU for opt-125m)", opts.batch,
                    opts.seq, t1 * 1e3))
print("| model | gradient | sent per rank, N=2 / N→∞ | allreduce N→∞ at 10 / 25 / 100 Gb/s "
      .. "| step (1 thread) | tokens per rank for exchange = compute, at 10 / 25 / 100 Gb/s |")
print("|---|---|---|---|---|---|")
for _, mdl in ipairs(MODELS) do
  local grad = 4 * mdl[2]
  local step = t1 * mdl[3] / MODELS[1][3]
  local per_token = step / tokens
  local tx, need = {}, {}
  for k, g in ipairs(GBPS) do
    local t = 2 * grad * 8 / (g * 1e9)
    tx[k] = string.format("%.2f", t)
    need[k] = string.format("%.0f", t / per_token)
  end
  print(string.format("| %s | %.0f MB | %.0f / %.0f MB | %s s | %.1f s | %s |", mdl[1], grad / 1e6,
                      grad / 1e6, 2 * grad / 1e6, table.concat(tx, " / "), step,
                      table.concat(need, " / ")))
end
