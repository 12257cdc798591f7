-- scripts/experiments/chai_sst2.lua end to end on a tiny random classifier (the OPT tokenizer's
-- vocabulary, 2 layers x 4 heads): every configuration row is printed, the measured KV bytes per
-- token fall under clustering and pruning, the data comes from the Hub's cache when CHAI_DATA_DIR
-- is unset, one line names both ways when neither has it, and bad options are refused by name.
local chai = require "chai"
local T = require "helper"
local chai_bin = assert(os.getenv("CHAI_BUILD_DIR"), "CHAI_BUILD_DIR unset") .. "/chai"
local data = assert(os.getenv("CHAI_TEST_FIXTURES"), "CHAI_TEST_FIXTURES unset") .. "/data"
local tmp = T.tmpdir()
local m = chai.opt.create({vocab_size = 50272, hidden_size = 32, num_hidden_layers = 2,
                           num_attention_heads = 4, ffn_dim = 64, max_position_embeddings = 80,
                           num_labels = 2, init_std = 0.2}, {seed = 3})
m:save(tmp .. "/model")
m:free()
-- env: the variables before the command (default: CHAI_DATA_DIR = the slices in the repository)
local function run(args, env)
  local p = io.popen(string.format("%s '%s' script experiments/chai_sst2.lua %s 2>&1; echo \"exit=$?\"",
                                   env or ("CHAI_DATA_DIR='" .. data .. "'"), chai_bin, args))
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
local function no_traceback(t) return not t:find("traceback", 1, true) and not t:find("%.lua:%d+:") end
local function one_line(t) return select(2, t:gsub("\n", "")) == 2 end -- the message and "exit="

-- Without CHAI_DATA_DIR the tokenizer and the SST-2 splits come from the Hub; here from its cache,
-- laid out as huggingface_hub and chai.data's rows client leave it (HF_HUB_OFFLINE=1: no network).
local hub = tmp .. "/hub"
local snap = hub .. "/models--facebook--opt-125m/snapshots/" .. string.rep("ab", 20)
assert(os.execute(string.format("mkdir -p '%s' '%s/models--facebook--opt-125m/refs' " ..
                                "'%s/datasets--nyu-mll--glue/chai-rows/refs' " ..
                                "'%s/datasets--nyu-mll--glue/chai-rows/r1/sst2'", snap, hub, hub, hub)))
T.write_bytes(hub .. "/models--facebook--opt-125m/refs/main", string.rep("ab", 20))
for _, f in ipairs({"vocab.json", "merges.txt"}) do
  assert(os.execute(string.format("ln -s '%s/opt-tokenizer/%s' '%s/%s'", data, f, snap, f)))
end
T.write_bytes(snap .. "/tokenizer_config.json", '{"add_bos_token": true}')
T.write_bytes(snap .. "/special_tokens_map.json", "{}")
local rows_dir = hub .. "/datasets--nyu-mll--glue/chai-rows"
T.write_bytes(rows_dir .. "/refs/main", "r1\n")
for _, split in ipairs({"validation", "train"}) do
  chai.data.write_jsonl(rows_dir .. "/r1/sst2/" .. split .. ".jsonl", chai.data.task("sst2", split, {data_dir = data}).rows)
end
local args = string.format("--model '%s/model' --limit 12 --calib 6 --tokens 12", tmp)
local hub_text, hub_code = run(args, "env -u CHAI_DATA_DIR HF_HUB_OFFLINE=1 HF_HUB_CACHE='" .. hub .. "'")
T.eq(hub_code, 0, "runs on the Hub's data without CHAI_DATA_DIR: " .. hub_text)
T.check(hub_text:find("| static, every layer k=2 |", 1, true) ~= nil, "the same table from the Hub's data")
-- the tokenizer and the rows are the data folder's, so the table is the same
local function table_part(t) return t:match("\n(| configuration .*)") or "" end
T.eq(table_part(hub_text), table_part(text), "the Hub's data gives the same table as the data folder's")
text, code = run(args, "env -u CHAI_DATA_DIR HF_HUB_OFFLINE=1 HF_HUB_CACHE='" .. tmp .. "/empty'")
T.check(code == 1 and text:find("chai_sst2.lua: chai.data: no OPT tokenizer: $CHAI_DATA_DIR is unset, and the Hub " ..
                                "(facebook/opt-125m) failed", 1, true) and
        text:find("set CHAI_DATA_DIR to a data folder", 1, true) and no_traceback(text) and one_line(text),
        "neither source: one line naming both ways: " .. text)

text, code = run("--frobnicate 1")
T.check(code == 2 and text:find("chai_sst2.lua: unknown option '--frobnicate'", 1, true) and no_traceback(text) and
        one_line(text), "unknown option refused: " .. text)
text, code = run("--limit many")
T.check(code == 2 and text:find("--limit 'many': needs a positive integer", 1, true) and no_traceback(text),
        "bad number refused: " .. text)
text, code = run("--model '" .. tmp .. "/no-such-model'")
T.check(code == 1 and text:find("chai_sst2.lua: --model '" .. tmp .. "/no-such-model': cannot open", 1, true) and
        no_traceback(text) and one_line(text), "a missing model: one line: " .. text)
T.finish()
