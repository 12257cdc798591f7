-- scripts/experiments/zeroshot.lua end to end on the eval fixture model: output lines, JSON, exit
-- codes for bad usage; under CHAI (--heads, --heads-k; static, online, prune) on a random 4-head
-- model: the identity plan equals dense, k=2 shrinks the KV cache, bad values exit cleanly.
local json = require("chai.core").json
local passed, failed = 0, 0
local function check(cond, what)
  if cond then passed = passed + 1 else failed = failed + 1; io.stderr:write("FAILED: " .. what .. "\n") end
end
local chai_bin = assert(os.getenv("CHAI_BUILD_DIR"), "CHAI_BUILD_DIR unset") .. "/chai"
local fixtures = assert(os.getenv("CHAI_TEST_FIXTURES"), "CHAI_TEST_FIXTURES unset")
local data = fixtures .. "/data" -- the slices in the repository; CHAI_DATA_DIR points at them too
local out = os.tmpname()
local function run(args, env)
  local p = io.popen(string.format("%s'%s' script experiments/zeroshot.lua %s 2>&1; echo \"exit=$?\"", env or "", chai_bin, args))
  local text = p:read("a"); p:close()
  return text, tonumber(text:match("exit=(%d+)"))
end
local text, code = run(string.format("--model '%s/eval/model' --tokenizer '%s/opt-tokenizer' --task all --limit 4 --batch-size 2 --out '%s'",
                                     fixtures, data, out))
check(code == 0, "runs: " .. text)
check(text:find("piqa  n=4 ", 1, true) and text:find("acc_norm", 1, true), "piqa line")
check(text:find("rte   n=4 ", 1, true) and text:find("sst2  n=4 ", 1, true), "rte and sst2 lines")
local f = assert(io.open(out)); local res = json.decode(f:read("a")); f:close(); os.remove(out)
check(res.results.piqa.n == 4 and res.results.rte.acc ~= nil and res.results.sst2.add_bos == false, "JSON results")
local function no_traceback(t) return not t:find("traceback", 1, true) and not t:find("%.lua:%d+:") end
local function one_line(t) return select(2, t:gsub("\n", "")) == 2 end -- the message and "exit="
text, code = run("--task mnli")
check(code == 2 and text:find("unknown task 'mnli'", 1, true) and one_line(text), "unknown task exits 2: " .. text)
text, code = run("--frobnicate")
check(code == 2 and text:find("zeroshot.lua: unknown option '--frobnicate'", 1, true) and one_line(text) and
      no_traceback(text), "unknown option exits 2: " .. text)
text, code = run("--limit zero")
check(code == 2 and text:find("positive integer", 1, true) and one_line(text), "bad --limit exits 2")
text, code = run("--model '" .. fixtures .. "/no-such-model'")
check(code == 1 and text:find("zeroshot.lua: cannot open " .. fixtures .. "/no-such-model/config.json", 1, true) and
      one_line(text) and no_traceback(text), "a missing model: one line, exit 1: " .. text)

-- Under CHAI. A random 4-head model whose weights are large enough (init_std 0.3) for attention to
-- be peaked, so clustering heads can change the scores (checked below, else the identity-plan
-- equality would prove nothing).
local chai = require "chai"
local tmp = os.tmpname(); os.remove(tmp)
assert(os.execute("mkdir -p '" .. tmp .. "'"))
local model4 = tmp .. "/model4"
chai.opt.create({vocab_size = 50272, hidden_size = 16, num_hidden_layers = 2, num_attention_heads = 4,
                 ffn_dim = 32, max_position_embeddings = 512, init_std = 0.3}, {seed = 7}):save(model4)
local base = string.format("--model '%s' --tokenizer '%s/opt-tokenizer' --batch-size 4 ", model4, data)
local function run_json(args)
  local o = tmp .. "/out.json"
  os.remove(o)
  local t, c = run(base .. args .. " --out '" .. o .. "'")
  local fh = io.open(o)
  local doc = fh and json.decode(fh:read("a"))
  if fh then fh:close() end
  return t, c, doc
end

-- Every head its own cluster (a static plan with k = H): exactly the dense metrics and KV bytes.
local identity = tmp .. "/identity.json"
local fh = assert(io.open(identity, "w"))
fh:write('{"layers":[{"layer":0,"clusters":[[0],[1],[2],[3]]},{"layer":1,"clusters":[[0],[1],[2],[3]]}]}')
fh:close()
local doc
text, code, doc = run_json("--task piqa --limit 8 --heads '" .. identity .. "'")
check(code == 0 and doc ~= nil, "identity plan runs: " .. text)
if doc then
  local d, c = doc.results.piqa, doc.chai.tasks.piqa
  check(c.metrics.acc == d.acc and c.metrics.acc_norm == d.acc_norm and c.metrics.n == 8,
        "identity plan: the dense metrics exactly")
  check(c.change_points.acc == 0 and c.change_points.acc_norm == 0, "identity plan: change 0")
  check(c.kv_cache_bytes_per_token.chai == c.kv_cache_bytes_per_token.dense and
        c.kv_cache_bytes_per_token.dense == 2 * 2 * 16 * 4, "identity plan: the dense KV bytes")
  check(doc.chai.mode == "static" and doc.chai.plan_file == identity and #c.plan.layers == 2, "identity plan JSON")
end
check(text:find("piqa  dense  n=8 ", 1, true) and text:find("piqa  static n=8 ", 1, true) and
      text:find("piqa  change acc +0.00 points, acc_norm +0.00 points | KV cache 256 → 256 bytes/token (0.0% saved)", 1, true),
      "identity plan output lines")

-- k = 2 on every layer, calibrated on the RTE train split; static, online (batch 1), prune.
local plan2 = tmp .. "/k2.json"
local changed = false
local results = {}
text, code, doc = run_json("--task rte --limit 16 --heads-k 2 --calib 16 --calib-tokens 16 --save-plan '" .. plan2 .. "'")
check(code == 0 and doc ~= nil, "static k=2 runs: " .. text)
check(text:find("rte   plan   calibrated on rte train (16 texts × 16 tokens), --heads-k 2: k 1:2 2:2", 1, true),
      "static k=2 says the plan")
check(text:find("KV cache 256 → 192 bytes/token (25.0% saved)", 1, true), "static k=2 KV line")
local saved = chai.heads.load_plan(plan2, {layers = 2, heads = 4})
check(#saved.layers == 2 and saved.layers[1].k == 2 and saved.layers[2].k == 2 and
      saved.meta.calibration.task == "rte" and saved.meta.calibration.split == "train", "--save-plan writes the plan")
results.static = doc
text, code, doc = run_json("--task rte --limit 16 --heads '" .. plan2 .. "' --heads-mode online")
check(code == 0 and doc ~= nil, "online k=2 runs: " .. text)
check(text:find("batch size 1, not 4", 1, true) and text:find("rte   online n=16 ", 1, true) and
      text:find("KV cache 256 → 192 bytes/token (25.0% saved); a prompt under 6 tokens runs dense", 1, true),
      "online: batch 1 and the plan's compact K cache, said")
results.online = doc
text, code, doc = run_json("--task rte --limit 16 --heads-k 2 --calib 16 --calib-tokens 16 --heads-mode prune")
check(code == 0 and doc ~= nil, "prune k=2 runs: " .. text)
check(text:find("KV cache 256 → 128 bytes/token (50.0% saved); parameters ", 1, true), "prune: K and V shrink")
results.prune = doc
local dense_acc
for mode, d in pairs(results) do
  local c = d.chai.tasks.rte
  dense_acc = dense_acc or d.results.rte.acc
  check(d.results.rte.acc == dense_acc and d.results.rte.n == 16, mode .. ": the same dense metrics")
  check(c.metrics.n == 16 and c.metrics.acc >= 0 and c.metrics.acc <= 1 and
        math.abs(c.change_points.acc - 100 * (c.metrics.acc - dense_acc)) < 1e-9, mode .. ": sane metrics")
  check(d.chai.mode == mode and c.metrics.batch_size == (mode == "online" and 1 or 4), mode .. ": mode and batch")
  check(c.plan.layers[1].k == 2 and c.plan.layers[2].k == 2, mode .. ": the plan in the JSON")
  local kv = c.kv_cache_bytes_per_token
  check(kv.dense == 256 and kv.chai == (mode == "prune" and 128 or 192), mode .. ": KV bytes per token")
  changed = changed or c.change_points.acc ~= 0
end
check(results.prune.chai.tasks.rte.parameters.chai < results.prune.chai.tasks.rte.parameters.dense, "prune: fewer parameters")
check(changed, "clustering at k=2 changes some metric (so the identity test can fail)")

-- --task all calibrates each task on its own train split and --save-plan writes one plan per task.
-- PIQA's train split is not in the data mirror: a cached Hub copy (made up rows) stands in for it.
local piqa_train = tmp .. "/hub/datasets--baber--piqa/chai-rows"
assert(os.execute("mkdir -p '" .. piqa_train .. "/refs' '" .. piqa_train .. "/0123abcd/default'"))
fh = assert(io.open(piqa_train .. "/refs/main", "w")); fh:write("0123abcd\n"); fh:close()
fh = assert(io.open(piqa_train .. "/0123abcd/default/train.jsonl", "w"))
for r = 1, 6 do
  fh:write(json.encode({goal = "How do I keep item " .. r .. " of the kitchen clean and dry?",
                        sol1 = "Wipe it with a towel.", sol2 = "Leave it in the rain.", label = 0}), "\n")
end
fh:close()
local hub_env = string.format("HF_HUB_CACHE='%s/hub' HF_HUB_OFFLINE=1 ", tmp)
text, code = run(base .. "--task all --limit 2 --heads-k 2 --calib 8 --calib-tokens 8 --save-plan '" .. tmp .. "/all.json'", hub_env)
check(code == 0 and text:find("piqa  plan   calibrated on piqa train (6 texts × 8 tokens)", 1, true) and
      text:find("sst2  plan   calibrated on sst2 train (8 texts × 8 tokens)", 1, true), "--task all calibrates per task: " .. text)
for _, t in ipairs({"piqa", "rte", "sst2"}) do
  local ok, p = pcall(chai.heads.load_plan, tmp .. "/all." .. t .. ".json")
  check(ok and p.meta.calibration.task == t and p.meta.calibration.split == "train", "--save-plan per task: " .. t)
  if t == "piqa" and ok then check(p.meta.calibration.source == "hub:baber/piqa/default", "piqa train from the Hub cache") end
end
text, code = run(base .. "--task piqa --heads-k 2", string.format("HF_HUB_CACHE='%s/none' HF_HUB_OFFLINE=1 ", tmp))
check(code == 1 and text:find("cannot read the piqa train split for calibration", 1, true) and
      text:find("--calib-task rte or sst2", 1, true) and not text:find("piqa  dense", 1, true) and no_traceback(text) and
      one_line(text),
      "no PIQA train split: a clear error before any evaluation: " .. text)

-- Bad values: a clear message naming the value, a non-zero exit, no traceback.
local function bad(args, needle, what)
  local t, c = run(base .. "--task rte --limit 2 " .. args)
  check(c ~= 0 and t:find(needle, 1, true) and no_traceback(t), what .. ": " .. t)
end
bad("--heads-k 2 --heads-mode fast", "unknown --heads-mode 'fast' (static, online or prune)", "unknown mode")
bad("--heads-k 5", "--heads-k '5': k = 5 is outside 1..4", "k above the heads")
bad("--heads-k 1:0", "k = 0 for layer 1 is outside 1..4", "k 0 for a layer")
bad("--heads-k 3:2", "layer 3 is outside 1..2", "layer outside the model")
bad("--heads-k two", "--heads-k 'two': expected K, elbow", "unparsable --heads-k")
bad("--heads '" .. tmp .. "/missing.json'", "missing.json': cannot read the plan file", "missing plan file")
bad("--heads-keep 2 --heads-k 2", "--heads-keep 2 applies to --heads-mode prune only", "keep without prune")
local konly = tmp .. "/konly.json"
fh = assert(io.open(konly, "w")); fh:write('{"layers":[{"layer":1,"k":2}]}'); fh:close()
bad("--heads '" .. konly .. "'", "layer 2 gives only k (0-based 1 in the file); --heads-mode static needs its clusters",
    "a k-only plan in static mode")
bad("--heads-mode online", "--heads-mode needs --heads PLAN.json or --heads-k K", "mode without a plan")
text, code = run(string.format("--model '%s/eval/model' --tokenizer '%s/opt-tokenizer' --task rte --heads '%s'",
                               fixtures, data, plan2))
check(code == 2 and text:find("--heads '" .. plan2 .. "': plan: layer 0: head ", 1, true) and
      text:find("out of range (heads 0..1)", 1, true) and
      text:find("the model has 2 layers × 2 heads", 1, true) and no_traceback(text),
      "a plan for another model's shape: " .. text)
os.execute("rm -rf '" .. tmp .. "'")

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
