-- chai.heads on a model: calibrate → plan → m:set_heads (static / online / from a file),
-- m:heads(), m:memory().kv_cache_bytes_per_token, back to dense, and refusals.
local chai = require "chai"
local heads = chai.heads
local passed, failed = 0, 0
local function check(cond, what)
  if cond then passed = passed + 1 else failed = failed + 1; io.stderr:write("FAILED: " .. what .. "\n") end
end
local function check_error(fn, needle, what)
  local ok, err = pcall(fn)
  check(not ok and tostring(err):find(needle, 1, true) ~= nil, what .. " (got: " .. tostring(err) .. ")")
end
local function maxdiff(a, b)
  local x, y, m = a:totable(), b:totable(), 0
  local function walk(p, q) if type(p) == "table" then for i = 1, #p do walk(p[i], q[i]) end else m = math.max(m, math.abs(p - q)) end end
  walk(x, y)
  return m
end
-- Dense inference and the clustered path use different attention kernels (GEMM-blocked vs per-key),
-- so "equal" means equal to float rounding: 1e-6 relative to the largest logit.
local function rounding_bound(t)
  local mx = 1
  local function walk(p) if type(p) == "table" then for i = 1, #p do walk(p[i]) end else mx = math.max(mx, math.abs(p)) end end
  walk(t:totable())
  return 1e-6 * mx
end

local m = chai.opt.load(os.getenv("CHAI_TEST_FIXTURES") .. "/opt/preln/st")
-- A stand-in tokenizer (the fixture model has a 96-token vocabulary): BOS then one id a byte.
local tok = {encode = function(_, text)
  local t = {2}
  for ch in text:gmatch(".") do t[#t + 1] = 3 + ch:byte() % 90 end
  return t
end}
local texts = {"the quick brown fox jumps over the lazy dog", "clustered head attention", "",
               "models share redundant heads", "zero-shot evaluation on small OPT models"}
local ids = {2, 40, 41, 50, 7, 9, 11, 60, 61}
local dense = m:forward({ids})
local dense_kv = m:memory().kv_cache_bytes_per_token
local dense_gen = m:generate(ids, {max_new_tokens = 2})
local dense_alloc = m:memory().kv_cache
check(dense_kv == 2 * 2 * 32 * 4, "dense KV bytes per token: " .. tostring(dense_kv))
check(m:heads().mode == "dense", "dense at start")

local stats = heads.calibrate(m, tok, texts, {tokens = 12, max_samples = 4})
check(stats.n_samples == 4, "max_samples caps, short text skipped: " .. stats.n_samples)
local r = stats.layers[1].rows:totable()
local s1 = 0
for j = 1, 12 do s1 = s1 + r[1][1][j] end
check(math.abs(s1 - 1) < 1e-5, "captured rows are probabilities")
check(maxdiff(m:forward({ids}), dense) == 0, "calibration leaves the model dense")

local plan = heads.plan(stats, {override = {[1] = 2, [2] = 3}})
check(#plan.layers == 2 and plan.layers[1].k == 2 and plan.layers[2].k == 3, "plan k from override")
m:set_heads(plan)
local info = m:heads()
check(info.mode == "static" and #info.membership[1] == 2 and #info.membership[2] == 3, "m:heads membership")
check(info.membership[1][1][1] == plan.layers[1].clusters[1][1], "representative first")
local kv = m:memory().kv_cache_bytes_per_token
check(kv == ((2 + 3) * 8 + 2 * 32) * 4, "K cache shrinks: " .. kv)
check(info.kv_cache_bytes_per_token == kv, "heads() reports the same bytes")
local clustered = m:forward({ids})
check(maxdiff(clustered, dense) > 1e-4, "clustering changes the logits")
m:generate(ids, {max_new_tokens = 2}) -- a cache of 10 tokens: K+V, the key mask, one count
local static_alloc = m:memory().kv_cache
check(dense_alloc == (10 * dense_kv / 4 + 11) * 4 and static_alloc == (10 * kv / 4 + 11) * 4,
      "the allocated cache falls: " .. dense_alloc .. " -> " .. static_alloc)
local out = m:generate(ids, {max_new_tokens = 4})
check(#out == 4, "generate under a static plan")

-- Evaluation scoring runs clustered too: a batch of items (left-padded contexts in the K cache of
-- representatives) agrees with one item at a time, and with log-softmax of the forward logits.
local ctxA, ctxB = {2, 40, 41, 50, 7, 9, 11}, {2, 60, 61}
local function ll_forward(ctx, tokid)
  local lg = m:forward({ctx}):totable()[1][#ctx]
  local mx = -math.huge
  for _, v in ipairs(lg) do mx = math.max(mx, v) end
  local z = 0
  for _, v in ipairs(lg) do z = z + math.exp(v - mx) end
  return lg[tokid + 1] - mx - math.log(z)
end
local both = m:score_continuations({ctxA, ctxB}, {{{5}, {6, 7}}, {{8}}})
local one = m:score_continuations({ctxA}, {{{5}, {6, 7}}})
check(math.abs(both[1][1].ll - one[1][1].ll) < 1e-4 and math.abs(both[1][2].ll - one[1][2].ll) < 1e-4,
      "scoring: batch equals one item at a time")
check(math.abs(one[1][1].ll - ll_forward(ctxA, 5)) < 1e-4, "scoring equals the clustered forward")
check(math.abs(both[2][1].ll - ll_forward(ctxB, 8)) < 1e-4, "scoring a short padded context")

-- Every head its own cluster equals dense.
m:set_heads({layers = {{layer = 1, clusters = {{1}, {2}, {3}, {4}}}, {layer = 2, clusters = {{1}, {2}, {3}, {4}}}}})
check(maxdiff(m:forward({ids}), dense) <= rounding_bound(dense), "identity plan equals dense")

-- From a file, and online mode.
local path = os.tmpname()
heads.save_plan(plan, path)
m:set_heads(path, {mode = "online"})
check(m:heads().mode == "online", "online from a file")
-- Online mode stores K of the representatives only, as static mode with the same k does.
check(m:memory().kv_cache_bytes_per_token == kv and m:heads().kv_cache_bytes_per_token == kv,
      "online K cache bytes per token = the static plan's")
local g = m:generate(ids, {max_new_tokens = 2})
check(#g == 2 and g.dense_fallback == false, "online generate clusters a 9-token prompt")
check(m:memory().kv_cache == static_alloc, "online allocates what static does: " .. m:memory().kv_cache)
local gs = m:generate({2, 40, 41}, {max_new_tokens = 2})
check(gs.dense_fallback == true and m:heads().fallback == true, "short prompt says it ran dense")
check(m:memory().kv_cache_bytes_per_token == kv, "bytes per token stay the plan's after a fallback")
-- Long, short, long, short prompts through one model generate what fresh models do (the cache is
-- re-laid out between the compact and the full-width K); short prompts what the dense model does.
local fixture = os.getenv("CHAI_TEST_FIXTURES") .. "/opt/preln/st"
local dense_m = chai.opt.load(fixture)
for _, p in ipairs({ids, {2, 40, 41, 50}, {2, 60, 61, 7, 9, 11, 40}, {2, 9, 11, 60, 61}, ids}) do
  local got = m:generate(p, {max_new_tokens = 3})
  local fresh = chai.opt.load(fixture)
  fresh:set_heads(path, {mode = "online"})
  local want = fresh:generate(p, {max_new_tokens = 3})
  check(got.dense_fallback == (#p < 6) and want.dense_fallback == got.dense_fallback,
        "fallback for a " .. #p .. "-token prompt")
  local same = #got == #want
  for i = 1, #want do same = same and got[i] == want[i] end
  check(same, "alternating prompts: " .. #p .. " tokens as on a fresh model")
  if #p < 6 then
    local d = dense_m:generate(p, {max_new_tokens = 3})
    for i = 1, #d do same = same and got[i] == d[i] end
    check(same, "a " .. #p .. "-token prompt generates as the dense model")
  end
  fresh:free()
end
dense_m:free()
check_error(function() m:forward({ids, ids}) end, "one prompt at a time", "online refuses batches")
local on1 = m:score_continuations({ctxA}, {{{5}}})
check(math.abs(on1[1][1].ll - ll_forward(ctxA, 5)) < 1e-4, "online scoring, one item")
os.remove(path)

-- Refusals (1-based numbers), and back to dense.
check_error(function() m:set_heads(plan, {mode = "magic"}) end, 'unknown mode "magic"', "bad mode")
check_error(function() m:set_heads(plan, {keep = 2}) end, 'keep applies to mode "prune" only', "keep without prune")
check_error(function() m:set_heads(nil, {mode = "prune"}) end, "needs a plan", "prune needs a plan")
check_error(function() m:set_heads({layers = {{layer = 3, clusters = {{1, 2, 3, 4}}}}}) end,
            "layer 3 out of range (the model has layers 1..2)", "layer out of range")
check_error(function() m:set_heads({layers = {{layer = 1, clusters = {{1, 2}, {3}}}}}) end,
            "layer 1: head 4 missing", "head missing")
check_error(function() m:set_heads({layers = {{layer = 1, k = 2}}}) end, "static mode needs its clusters", "k-only plan in static mode")
check_error(function() m:set_heads("/nonexistent/plan.json") end, "/nonexistent/plan.json", "missing plan file")
check_error(function() m:set_heads(42) end, "expected a plan table", "bad plan type")
m:set_heads(nil)
check(m:heads().mode == "dense" and m:memory().kv_cache_bytes_per_token == dense_kv, "back to dense")
check(maxdiff(m:forward({ids}), dense) == 0, "dense logits again")
-- Pruning: a new, smaller model; the original stays dense.
local small = m:set_heads(plan, {mode = "prune"})
check(m:heads().mode == "dense", "prune leaves the model alone")
local lh = heads.layer_heads(small)
check(lh[1] == 2 and lh[2] == 3, "keep=1: one head a cluster")
check(small:num_parameters() < m:num_parameters(), "fewer parameters")
check(small:memory().kv_cache_bytes_per_token == (2 + 2 + 3 + 3) * 8 * 4, "smaller K and V cache")
local dir = os.tmpname()
os.remove(dir)
small:save(dir)
local loaded = chai.opt.load(dir)
check(maxdiff(loaded:forward({ids}), small:forward({ids})) <= 1e-6, "pruned model saves and loads")
check(heads.layer_heads(loaded)[2] == 3, "head counts recorded in config.json")
local two = heads.prune(m, plan, {keep = 2})
check(heads.layer_heads(two)[1] >= 2, "keep=2")
check_error(function() heads.prune(m, plan, {keep = 0}) end, "keep must be >= 1", "keep 0")
check_error(function() loaded:set_heads(plan) end, "pruned", "no clustering of a pruned model")
os.execute("rm -rf '" .. dir .. "'")
check_error(function() heads.calibrate(m, tok, {""}) end, "no text has 2 or more tokens", "calibrate needs text")
check_error(function() heads.calibrate(m, tok, texts, {tokens = 1}) end, "tokens must be an integer >= 2", "calibrate tokens")
m:set_heads(plan)
check_error(function() heads.calibrate(m, tok, texts) end, "set_heads(nil)", "calibrate needs a dense model")
m:set_heads(nil)

-- A half-precision model: the packed representative rows are converted to f32 (identity == dense).
local h16 = chai.opt.load(os.getenv("CHAI_TEST_FIXTURES") .. "/opt/preln/st", {dtype = "f16"})
local d16 = h16:forward({ids})
h16:set_heads({layers = {{layer = 1, clusters = {{1}, {2}, {3}, {4}}}, {layer = 2, clusters = {{1}, {2}, {3}, {4}}}}})
check(maxdiff(h16:forward({ids}), d16) <= 1e-5, "f16 model: identity plan equals dense")

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
