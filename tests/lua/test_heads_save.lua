-- m:save of a model under a head plan writes chai_heads.json and chai.opt.load puts the model back
-- under the same plan and mode (bit-identical scores, the compact KV cache); heads = false loads it
-- dense; a dense save removes a stale plan file; a malformed plan file is refused by name.
local chai = require "chai"
local T = require "helper"

local cfg = {vocab_size = 64, hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 4,
             ffn_dim = 64, max_position_embeddings = 32, num_labels = 2}
local ids = {{2, 5, 9, 11, 7, 3, 8, 12}}
local plan = {layers = {{layer = 2, clusters = {{1, 3}, {2}, {4}}}}}

for _, mode in ipairs({"static", "online"}) do
  local m = chai.opt.create(cfg, {seed = 1})
  m:set_heads(plan, {mode = mode})
  local want = m:classify(ids):totable()
  local dir = T.tmpdir()
  m:save(dir)
  local saved = chai.heads.load_plan(dir .. "/chai_heads.json")
  T.eq(saved.meta and saved.meta.mode, mode, mode .. ": the file names the mode")
  local back = chai.opt.load(dir)
  T.eq(back:heads().mode, mode, mode .. ": loaded under its mode")
  T.eq(back:heads().plan.layers[1].clusters, {{1, 3}, {2}, {4}}, mode .. ": the same clusters")
  T.eq(back:memory().kv_cache_bytes_per_token, m:memory().kv_cache_bytes_per_token, mode .. ": KV bytes")
  T.eq(back:classify(ids):totable(), want, mode .. ": the same scores, bit for bit")
  T.eq(chai.opt.load(dir, {heads = false}):heads().mode, "dense", mode .. ": heads = false loads dense")
  -- Saving the model dense into the same folder removes the plan file.
  m:set_heads(nil)
  m:save(dir)
  T.check(io.open(dir .. "/chai_heads.json", "rb") == nil, mode .. ": a dense save removes chai_heads.json")
  T.eq(chai.opt.load(dir):heads().mode, "dense", mode .. ": loads dense after a dense save")
end

-- A plan file that does not fit the model, or names an unknown mode, is refused naming the file.
local m = chai.opt.create(cfg, {seed = 1})
local dir = T.tmpdir()
m:save(dir)
T.write_bytes(dir .. "/chai_heads.json", '{"layers":[{"layer":5,"k":2}]}')
T.raises(function() chai.opt.load(dir) end, {"chai_heads.json", "layer"}, "a layer the model lacks")
T.write_bytes(dir .. "/chai_heads.json", '{"layers":[{"layer":1,"k":2}],"meta":{"mode":"fast"}}')
T.raises(function() chai.opt.load(dir) end, {"chai_heads.json", "meta.mode", "fast"}, "an unknown mode")
T.finish()
