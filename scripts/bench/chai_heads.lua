-- CHAI benchmark: KV-cache bytes per plan, time-to-next-token against context length and prefill
-- time, clustered against dense, on a randomly initialised opt-125m-shaped model (12 layers, 12
-- heads, d_model 768, FFN 3072; position table stretched to 2112 rows so a 2048-token context
-- still has room for the new tokens; weights random, so only speed and bytes mean anything).
--   chai script scripts/bench/chai_heads.lua [--threads N] [--contexts 128,256,...] [--new N]
--                                            [--reps R] [--dtype f32|f16] [--no-timing]
-- For each context length: the prompt goes through the KV cache in one prefill, then `new`
-- single-token decode steps (default 32) are timed one by one (LM head included: the real time
-- to next token).
-- Reported: the fastest step and the fastest prefill over `reps` (2) runs; minima, because the
-- machine may be shared and the minimum is what contention cannot inflate. With --threads 1 the
-- times are process CPU time (the work itself, robust to other jobs on a shared machine); with
-- more threads, wall-clock time.
local chai = require "chai"
local cli = require "chai.cli"

local opts = {threads = 2, contexts = {128, 256, 512, 1024, 2048}, new = 32, dtype = "f32", reps = 2}
for k, v in pairs(cli.options(arg, {
  prog = "chai_heads.lua",
  usage = "usage: chai script scripts/bench/chai_heads.lua [--threads N] [--contexts 128,256,...] " ..
          "[--new N] [--reps R] [--dtype f32|f16] [--no-timing]",
  options = {threads = "count", contexts = "integers", new = "count", reps = "count", dtype = "string",
             no_timing = "flag"},
})) do opts[k] = v end
chai.threads(opts.threads)

local L, H, D = 12, 12, 64
local config = {vocab_size = 50272, hidden_size = 768, num_hidden_layers = L, num_attention_heads = H,
                ffn_dim = 3072, max_position_embeddings = 2112, word_embed_proj_dim = 768,
                do_layer_norm_before = true}
local m = chai.opt.create(config, {dtype = opts.dtype, seed = 1})

-- Plans: k clusters of consecutive heads in the listed layers (a random model has no redundancy
-- to find, so membership is arbitrary; speed and bytes depend only on k).
local function uniform_plan(first_layer, k)
  local plan = {layers = {}}
  for l = first_layer, L do
    local clusters = {}
    for c = 1, k do clusters[c] = {} end
    for h = 1, H do table.insert(clusters[(h - 1) % k + 1], h) end
    plan.layers[#plan.layers + 1] = {layer = l, clusters = clusters}
  end
  return plan
end
local plans = {
  {name = "dense", plan = nil},
  {name = "layers 7-12 at k=4 (paper-style: late layers only)", plan = uniform_plan(7, 4)},
  {name = "all layers at k=6", plan = uniform_plan(1, 6)},
  {name = "all layers at k=3", plan = uniform_plan(1, 3)},
}

print(string.format("chai %s, %s (%s), %d threads, dtype %s", chai.version, chai.cpu().simd, chai.cpu().vendor, opts.threads, opts.dtype))
print("\n## KV-cache bytes per token (f32 cache, one sequence)")
print("| plan | K bytes/token | K+V bytes/token | K cache saved | K+V saved |")
print("|---|---|---|---|---|")
local dense_total
for _, p in ipairs(plans) do
  m:set_heads(p.plan)
  local total = m:memory().kv_cache_bytes_per_token
  local v_bytes = L * H * D * 4
  dense_total = dense_total or total
  local k_bytes = total - v_bytes
  print(string.format("| %s | %d | %d | %.1f%% | %.1f%% |", p.name, k_bytes, total,
                      100 * (1 - k_bytes / (dense_total - v_bytes)), 100 * (1 - total / dense_total)))
end

-- Memory traffic of one decode step (the bound on a memory-bound decode): m:decode_bytes under the
-- plan (every weight byte plus the K and V cache of the context as the plan keeps it), less the
-- members' W_q/W_k rows a clustered layer does not read (it reads its representatives' packed f32
-- copy instead).
local wbytes = opts.dtype == "f32" and 4 or 2
local function modelled_bytes(plan, n)
  m:set_heads(plan)
  local bytes = m:decode_bytes(n)
  for _, e in ipairs(plan and plan.layers or {}) do
    local k = #e.clusters
    bytes = bytes - 2 * (H - k) * D * 768 * wbytes
    if wbytes ~= 4 then bytes = bytes + 2 * k * D * 768 * (4 - wbytes) end
  end
  return bytes
end
print("\n## Modelled bytes read per decoded token (MB) and the ratio dense / clustered")
local mh, ms = "| context |", "|---|"
for _, p in ipairs(plans) do mh = mh .. " " .. p.name .. " |"; ms = ms .. "---|" end
print(mh)
print(ms)
for _, n in ipairs(opts.contexts) do
  local r = string.format("| %d |", n)
  local dense_b = modelled_bytes(nil, n)
  for _, p in ipairs(plans) do
    local b = modelled_bytes(p.plan, n)
    r = r .. (p.plan and string.format(" %.1f (%.3f×) |", b / 1e6, dense_b / b) or string.format(" %.1f |", b / 1e6))
  end
  print(r)
end
if opts.no_timing then return end

local bench_decode = require("chai.core").heads.bench_decode
local clock = opts.threads == 1 and "CPU" or "wall"

print(string.format("\n## Time to next token (fastest step) and prefill, ms (%s time)", clock))
local header, sep = "| context |", "|---|"
for _, p in ipairs(plans) do
  header = header .. " " .. p.name .. ": decode | prefill |"
  sep = sep .. "---|---|"
end
print(header)
print(sep)
local results = {}
for _, n in ipairs(opts.contexts) do
  local row = string.format("| %d |", n)
  for pi, p in ipairs(plans) do
    m:set_heads(p.plan)
    local best_prefill, best_step = math.huge, math.huge
    for _ = 1, opts.reps do
      local prefill, step, _, prefill_cpu, step_cpu = bench_decode(m, n, opts.new)
      if clock == "CPU" then prefill, step = prefill_cpu, step_cpu end
      best_prefill, best_step = math.min(best_prefill, prefill), math.min(best_step, step)
    end
    results[pi] = results[pi] or {}
    results[pi][n] = best_step
    row = row .. string.format(" %.2f | %.0f |", best_step * 1e3, best_prefill * 1e3)
  end
  print(row)
  io.stdout:flush()
end
print("\n## Decode speedup over dense (dense step time / clustered step time)")
local line = "| context |"
for pi = 2, #plans do line = line .. " " .. plans[pi].name .. " |" end
print(line)
print("|---|" .. string.rep("---|", #plans - 1))
for _, n in ipairs(opts.contexts) do
  local r = string.format("| %d |", n)
  for pi = 2, #plans do r = r .. string.format(" %.3f× |", results[1][n] / results[pi][n]) end
  print(r)
end
m:set_heads(nil)
