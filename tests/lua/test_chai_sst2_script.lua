-- scripts/experiments/chai_sst2.lua end to end on a tiny random classifier (the OPT tokenizer's
-- vocabulary, 2 layers x 4 heads): every configuration row is printed, the measured KV bytes per
-- token fall under clustering and pruning, and bad options are refused by name.
local chai = require "chai"
local T = require "helper"
local chai_bin = assert(os.getenv("CHAI_BUILD_DIR"), "CHAI_BUILD_DIR unset") .. "/chai"
local data = assert(os.getenv("CHAI_DATA_DIR"), "CHAI_DATA_DIR unset")
local tmp = T.tmpdir()
local m = chai.opt.create({vocab_size = 50272, hidden_size = 32, num_hidden_layers = 2,
                           num_attention_heads = 4, ffn_dim = 64, max_position_embeddings = 80,
                           num_labels = 2, init_std = 0.2}, {seed = 3})
m:save(tmp .. "/model")
m:free()
local function run(args)
  local p = io.popen(string.format("CHAI_DATA_DIR='%s' '%s' script experiments/chai_sst2.lua %s 2>&1; echo \"exit=$?\"",
                                   data, chai_bin, args))
  local text = p:read("a")
  p:close()
  return text, tonumber(text:match("exit=(%d+)"))
end
local text, code = run(string.format("--model '%s/model' --limit 12 --calib 6 --tokens 12", tmp))
T.eq(code, 0, "runs: " .. text)
local rows = {}
for name, merged, kv, saved in text:gmatch("\n| ([^|]-) | ([%d.]+)%% | (%d+) | ([%d.%-]+)%% |") do
  rows[name] = {merged = tonumber(merged), kv = tonumber(kv), saved = tonumber(saved)}
end
local dense = rows["dense"]
T.check(dense and dense.merged == 0 and dense.saved == 0, "dense row")
-- 2 layers x (K and V of 32 floats) per token
T.eq(dense and dense.kv, 2 * 2 * 32 * 4, "dense KV bytes per token")
local st = rows["static, every layer k=2"]
T.check(st and st.kv == dense.kv - 2 * 2 * 8 * 4 and math.abs(st.saved - 25.0) < 0.05,
        "static k=2: K of 2 representatives of 4 heads, 25% of K+V")
local pr = rows["prune, every layer k=2, keep 1"]
T.check(pr and pr.kv == dense.kv // 2, "prune k=2 keeps half the heads: half of K and V")
local on = rows["online, every layer k=3"]
T.check(on and on.kv < dense.kv, "online stores compact K")
T.check(rows["prune, layers 2-2 k=1, keep 1"] ~= nil, "prune with the first layer whole")
text, code = run("--frobnicate 1")
T.check(code ~= 0 and text:find("unknown option --frobnicate", 1, true), "unknown option refused")
text, code = run("--limit many")
T.check(code ~= 0 and text:find("--limit needs a number, got many", 1, true), "bad number refused")
T.finish()
