-- CHAI benchmark: KV-cache bytes per plan, time-to-next-token against context length and prefill
-- time, clustered against dense, on a randomly initialised opt-125m-shaped model (12 layers, 12
-- heads, d_model 768, FFN 3072; position table stretched to 2112 rows so a 2048-token context
-- still has room for the new tokens; weights random, so only speed and bytes mean anything).
--   chai script scripts/bench/chai_heads.lua [--threads N] [--contexts 128,256,...] [--new N]
--                                            [--dtype f32|f16]
-- Decode time per token = (time of generate(prompt, 1 + new) − time of generate(prompt, 1)) / new,
-- both greedy with the KV cache; prefill = generate(prompt, 1), best of two runs.
local chai = require "chai"
local bench = require("chai.core").bench

local opts = {threads = 2, contexts = {128, 256, 512, 1024, 2048}, new = 16, dtype = "f32"}
local i = 1
while i <= #arg do
  local a, v = arg[i], arg[i + 1]
  if a == "--threads" then opts.threads = tonumber(v)
  elseif a == "--new" then opts.new = tonumber(v)
  elseif a == "--dtype" then opts.dtype = v
  elseif a == "--contexts" then
    opts.contexts = {}
    for n in v:gmatch("%d+") do opts.contexts[#opts.contexts + 1] = tonumber(n) end
  else error("chai_heads.lua: unknown option '" .. a .. "' (--threads, --contexts, --new, --dtype)") end
  i = i + 2
end
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

local function prompt(n)
  local ids = {2}
  for t = 2, n do ids[t] = 100 + (t * 7919) % 40000 end
  return ids
end
local function timed(ids, new)
  local best = math.huge
  for _ = 1, 2 do
    local t = bench.now()
    m:generate(ids, {max_new_tokens = new, eos_token_id = -1})
    best = math.min(best, bench.now() - t)
  end
  return best
end

print("\n## Time to next token and prefill (ms)")
local header = "| context |"
local sep = "|---|"
for _, p in ipairs(plans) do header = header .. " " .. p.name .. " decode | prefill |"; sep = sep .. "---|---|" end
print(header)
print(sep)
local results = {}
for _, n in ipairs(opts.contexts) do
  local ids = prompt(n)
  local row = string.format("| %d |", n)
  for pi, p in ipairs(plans) do
    m:set_heads(p.plan)
    local t1 = timed(ids, 1)
    local t2 = timed(ids, 1 + opts.new)
    local decode = (t2 - t1) / opts.new
    results[pi] = results[pi] or {}
    results[pi][n] = decode
    row = row .. string.format(" %.2f | %.0f |", decode * 1e3, t1 * 1e3)
    collectgarbage()
  end
  print(row)
  io.stdout:flush()
end
print("\n## Decode speedup over dense (dense time / clustered time)")
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
