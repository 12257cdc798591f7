-- scripts/experiments/ktq_sst2.lua end to end on a tiny random classifier with the OPT tokenizer's
-- vocabulary: the sensitivity table, a row per configuration, the JSON Lines records, and bad
-- options refused by name.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local chai = require "chai"
local T = require "helper"
local json = require("chai.core").json
local chai_bin = assert(os.getenv("CHAI_BUILD_DIR"), "CHAI_BUILD_DIR unset") .. "/chai"
local data = os.getenv("CHAI_DATA_DIR")
local f = data and io.open(data .. "/sst2/glue_train.tsv", "rb")
if not f then
  print("skipped: CHAI_DATA_DIR has no sst2/glue_train.tsv")
  return T.finish()
end
f:close()
local tmp = T.tmpdir()
local m = chai.opt.create({vocab_size = 50272, hidden_size = 32, num_hidden_layers = 2,
                           num_attention_heads = 4, ffn_dim = 64, max_position_embeddings = 80,
                           num_labels = 2, init_std = 0.2}, {seed = 3})
m:save(tmp .. "/model")
m:free()
local function run(args)
  local p = io.popen(string.format("CHAI_DATA_DIR='%s' '%s' script experiments/ktq_sst2.lua %s 2>&1; echo \"exit=$?\"",
                                   data, chai_bin, args))
  local text = p:read("a")
  p:close()
  return text, tonumber(text:match("exit=(%d+)"))
end
local text, code = run(string.format("--model '%s/model' --limit 16 --steps 3 --repeats 1 --slices 8 --threads 1 "
                                     .. "--configs baseline,chai_base,chai_quant,chai_kd --out '%s/r.jsonl'", tmp, tmp))
T.eq(code, 0, "runs: " .. text)
T.check(text:find("| fisher | ", 1, true) ~= nil, "sensitivity table")
T.check(text:find("\n| chai_quant | chai→quant | ", 1, true) ~= nil, "chai_quant row")
local base = text:match("\n| baseline | — | ([%d.]+)%%")
T.check(base ~= nil, "baseline row")
T.check(text:find("\n| baseline | — | [%d.]+%% %([%d.–]+%) | %+0.00 %[%+0.00, %+0.00%]") ~= nil,
        "the baseline against itself: a zero paired difference")
T.check(text:find("\n| chai_kd | chai→kd | ", 1, true) ~= nil, "chai_kd row")
local lines = {}
for line in io.lines(tmp .. "/r.jsonl") do lines[#lines + 1] = json.decode(line) end
T.eq(#lines, 4 + 4, "JSON lines: 4 sensitivities, 4 configurations")
local q = lines[7]
T.eq({q.name, q.records[2].step}, {"chai_quant", "quant"}, "records of chai_quant")
T.check(q.metrics.weight_bytes.by_format.int8 ~= nil, "chai_quant holds int8 weights")
local kd = lines[8]
T.eq({kd.kind, kd.name, kd.records[2].step}, {"configuration", "chai_kd", "kd"}, "records of chai_kd")
T.check(kd.metrics.paired and kd.metrics.latency_ms.p99 ~= nil, "metrics of chai_kd")
text, code = run(string.format("--model '%s/model' --limit 8 --steps 2 --repeats 1 --slices 8 --threads 1 "
                                 .. "--no-sensitivity --configs chai_base --set chai.layers=2", tmp))
T.check(text:find("chai_base not run: chai.ktq: chai.layers must be a list of layers", 1, true), "--set reaches the recipe: " .. text)
text, code = run(string.format("--model '%s/model' --limit 8 --repeats 1 --slices 8 --threads 1 "
                               .. "--no-sensitivity --configs chai_base --set chai.min_layer=2 --out '%s/s.jsonl'", tmp, tmp))
T.eq(code, 0, "--set chai.min_layer=2 runs")
local line = json.decode(io.lines(tmp .. "/s.jsonl")())
T.eq({line.recipe.chai.min_layer, line.records[1].k[1]}, {2, 4}, "layer 1 left dense")
text, code = run("--set chai")
T.check(code == 2 and text:find("--set 'chai': needs STEP.KEY=VALUE", 1, true), "bad --set refused")
text, code = run("--frobnicate 1")
T.check(code == 2 and text:find("unknown option '--frobnicate'", 1, true), "unknown option refused")
text, code = run("--configs baseline,chai_turbo")
T.check(code == 2 and text:find("unknown configuration 'chai_turbo'", 1, true), "unknown configuration refused")
T.finish()
