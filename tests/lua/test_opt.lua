-- chai.opt from Lua: the issue's API on the committed tiny OPT fixtures (tests/fixtures/opt, made
-- by tests/fixtures/make_opt_fixtures.py from a faithful PyTorch OPT): logits, left padding,
-- classification, generation and its options, save/load, memory, and clear errors.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"

local FIX = (os.getenv("CHAI_TEST_FIXTURES") or (dir .. "../fixtures")) .. "/opt/"
local TOL = 1e-4

local function max_diff_rows(got, want, mask)
  -- got, want: nested (B,T,V) tables; mask (B,T) table of 0/1
  local worst = 0
  for b = 1, #want do
    for t = 1, #want[b] do
      if mask[b][t] == 1 then
        for v = 1, #want[b][t] do
          local d = math.abs(got[b][t][v] - want[b][t][v])
          if d > worst or d ~= d then worst = d ~= d and math.huge or d end
        end
      end
    end
  end
  return worst
end

local function max_diff(a, b)
  local worst = 0
  local function walk(x, y)
    if type(x) == "number" then
      local d = math.abs(x - y)
      if d > worst or d ~= d then worst = d ~= d and math.huge or d end
    else
      for i = 1, #x do walk(x[i], y[i]) end
    end
  end
  walk(a, b)
  return worst
end

for _, variant in ipairs({"preln", "postln"}) do
  local ids = chai.load_npy(FIX .. variant .. "/ids_left.npy")     -- i32 tensors
  local mask = chai.load_npy(FIX .. variant .. "/mask_left.npy")
  local want = chai.load_npy(FIX .. variant .. "/logits_left.npy"):totable()
  local mask_t = mask:totable()
  for _, format in ipairs({"st", "bin"}) do
    local m = chai.opt.load(FIX .. variant .. "/" .. format, {quiet = true})
    local what = variant .. "/" .. format
    -- ids and mask as i32 tensors, then as Lua tables of tables: the same logits.
    local logits = m:forward(ids, {attention_mask = mask})
    T.eq(logits:shape(), {3, 7, m.config.vocab_size}, what .. " logits shape")
    T.eq(logits:dtype(), "f32", what .. " logits dtype")
    local got = logits:totable()
    T.check(max_diff_rows(got, want, mask_t) <= TOL, what .. " logits vs oracle")
    local got2 = m:forward(ids:totable(), {attention_mask = mask_t}):totable()
    T.check(max_diff(got, got2) == 0, what .. " tables and tensors agree")
    -- Left padding = no padding for the real tokens: row 3 holds 2 real tokens.
    local row = ids:totable()[3]
    local alone = m:forward({{row[6], row[7]}}):totable()
    T.check(max_diff(alone[1], {got[3][6], got[3][7]}) <= TOL, what .. " left padding")
    local last = m:forward(ids, {attention_mask = mask, last_only = true})
    T.eq(last:shape(), {3, m.config.vocab_size}, what .. " last_only shape")
    T.check(max_diff(last:totable()[2], got[2][7]) <= 1e-5, what .. " last_only values")

    -- Classification on the last non-pad token, both paddings.
    if not (variant == "preln" and format == "bin") then
      for _, side in ipairs({"left", "right"}) do
        local cid = chai.load_npy(FIX .. variant .. "/ids_" .. side .. ".npy")
        local cm = chai.load_npy(FIX .. variant .. "/mask_" .. side .. ".npy")
        local cw = chai.load_npy(FIX .. variant .. "/cls_" .. side .. ".npy"):totable()
        local s = m:classify(cid, {attention_mask = cm})
        local nl = 0
        for _ in pairs(m.config.id2label) do nl = nl + 1 end
        T.eq(s:shape(), {3, nl}, what .. " classify shape")
        T.check(max_diff(s:totable(), cw) <= TOL, what .. " classify " .. side)
      end
      T.eq(#m:warnings(), 0, what .. " no warnings")
    else
      local s = m:classify({{2, 5, 6}})
      T.eq(s:shape(), {1, 3}, what .. " random head shape")
      T.eq(#m:warnings(), 1, what .. " random head warned")
      T.check(m:warnings()[1]:find("no score.weight", 1, true) ~= nil, what .. " warning text")
    end

    -- Greedy generation: the oracle's tokens exactly; a flat table of one prompt in, new ids out.
    local prompt = chai.load_npy(FIX .. variant .. "/greedy_prompt.npy"):totable()
    local greedy = chai.load_npy(FIX .. variant .. "/greedy_tokens.npy"):totable()
    T.eq(m:generate(prompt, {max_new_tokens = 12}), greedy, what .. " greedy")
    m:free()
  end
end

-- m.config: Hugging Face key names.
local m = chai.opt.load(FIX .. "postln/st", {quiet = true})
local c = m.config
T.eq(c.model_type, "opt", "config model_type")
T.eq(c.hidden_size, 32, "config hidden_size")
T.eq(c.word_embed_proj_dim, 16, "config word_embed_proj_dim")
T.eq(c.do_layer_norm_before, false, "config do_layer_norm_before")
T.eq(c.activation_function, "relu", "config activation_function")
T.eq(c.pad_token_id, 1, "config pad_token_id")
T.eq(c.id2label, {["0"] = "LABEL_0", ["1"] = "LABEL_1"}, "config id2label")
T.check(m.config == c, "config is cached")
T.eq(chai.opt.load(FIX .. "preln/st", {quiet = true}).config.id2label["2"], "positive",
     "id2label from the file")
T.check(tostring(m):find("post-LN", 1, true) ~= nil, "tostring")
T.eq(m:dtype(), "f32", "dtype")

-- Generation options.
local prompt = chai.load_npy(FIX .. "postln/greedy_prompt.npy"):totable()
local greedy = chai.load_npy(FIX .. "postln/greedy_tokens.npy"):totable()
T.eq(m:generate(prompt, {max_new_tokens = 5}), {table.unpack(greedy, 1, 5)}, "max_new_tokens")
T.eq(m:generate(prompt, {max_new_tokens = 0}), {}, "no new tokens")
T.eq(m:generate(prompt, {max_new_tokens = 12, eos_token_id = greedy[1]}), {greedy[1]},
     "an eos that ends generation is included")
T.eq(m:generate(prompt, {max_new_tokens = 12, top_k = 1, seed = 3}), greedy, "top_k 1 is greedy")
local a = m:generate(prompt, {max_new_tokens = 12, temperature = 3, seed = 5})
local b = m:generate(prompt, {max_new_tokens = 12, temperature = 3, seed = 5})
T.eq(a, b, "same seed, same tokens")
local differs = false
for s = 6, 14 do
  differs = differs or not T.deep_eq(a, m:generate(prompt, {max_new_tokens = 12, temperature = 3,
                                                         seed = s}))
end
T.check(differs, "other seeds, other tokens")
chai.seed(99)
local c1 = m:generate(prompt, {max_new_tokens = 8, top_p = 0.9})
chai.seed(99)
T.eq(m:generate(prompt, {max_new_tokens = 8, top_p = 0.9}), c1, "chai.seed makes sampling repeatable")
for _, tok in ipairs(m:generate(prompt, {max_new_tokens = 12, top_k = 5, temperature = 2})) do
  T.check(math.type(tok) == "integer" and tok >= 0 and tok < 80, "token in the vocabulary")
end
T.eq(m:generate(chai.tensor(prompt, "i32"), {max_new_tokens = 3}), {table.unpack(greedy, 1, 3)},
     "an i32 tensor prompt")

-- Save and load back: bit-identical logits; num_parameters; memory.
local tmp = T.tmpdir()
m:save(tmp .. "/saved")
local m2 = chai.opt.load(tmp .. "/saved")
local x = {{2, 30, 31, 32}}
T.check(max_diff(m:forward(x):totable(), m2:forward(x):totable()) == 0, "save/load bit-identical")
T.eq(m2:num_parameters(), m:num_parameters(), "num_parameters after reload")
-- mmap = false: the weights are copied out of the file, so the model no longer depends on it.
local want = m:forward(x):totable()
local mc = chai.opt.load(tmp .. "/saved", {mmap = false})
T.check(max_diff(mc:forward(x):totable(), want) == 0, "mmap=false: bit-identical logits")
T.eq(mc:memory().weights, m2:memory().weights, "mmap=false: same weight bytes")
m2:free()
local scribble = io.open(tmp .. "/saved/model.safetensors", "r+b")
scribble:seek("end", -4096)
scribble:write(string.rep("\255", 4096))
scribble:close()
T.check(max_diff(mc:forward(x):totable(), want) == 0, "mmap=false: the file can change underneath")
mc:free()
T.raises(function() chai.opt.load(tmp .. "/saved", {mmap = "no"}) end, "mmap must be true or false",
         "bad mmap option")
m:save(tmp .. "/saved")
m2 = chai.opt.load(tmp .. "/saved")
local mem = m:memory()
T.eq(mem.weights, 4 * m:num_parameters(), "memory.weights")
T.check(mem.activations > 0 and mem.kv_cache > 0, "memory.activations and kv_cache")
local h = chai.opt.load(FIX .. "postln/st", {dtype = "f16", quiet = true})
T.eq(h:dtype(), "f16", "f16 load")
T.check(h:memory().weights < mem.weights * 0.6, "f16 weights are smaller")
T.check(max_diff(h:forward(x):totable(), m:forward(x):totable()) <= TOL, "f16 logits")

-- A model from a config table.
local r = chai.opt.create({vocab_size = 40, hidden_size = 16, num_hidden_layers = 1,
                           num_attention_heads = 2, ffn_dim = 32, max_position_embeddings = 16},
                          {seed = 1})
local r2 = chai.opt.create({vocab_size = 40, hidden_size = 16, num_hidden_layers = 1,
                            num_attention_heads = 2, ffn_dim = 32, max_position_embeddings = 16},
                           {seed = 1})
T.check(max_diff(r:forward({{2, 3}}):totable(), r2:forward({{2, 3}}):totable()) == 0,
        "create is seeded")
T.check(chai.opt.read_bandwidth(8, 1) > 0, "read_bandwidth")
T.check(m:decode_bytes(10) > m:decode_bytes(0), "decode_bytes grows with context")

-- Clear errors.
T.raises(function() m:forward({{2, 80}}) end, {"ids[1][2] = 80", "vocabulary 0..79"}, "bad id")
T.raises(function() m:forward({{2, 3}}, {attention_mask = {{1, 1, 1}}}) end,
         "attention_mask is 1 x 3 but ids are 1 x 2", "mask shape")
T.eq(m:forward({2, 3}, {attention_mask = {{1, 1}}}):shape(), {1, 2, 80}, "flat ids are one row")
T.raises(function() m:forward({{2, 3}}, {attention_mask = {{1, 2}}}) end,
         "attention_mask[1][2] = 2", "mask value")
T.raises(function() m:forward({{2, 3}}, {mask = 1}) end, "unknown option", "unknown option")
T.raises(function() m:forward(chai.tensor({{2.5, 3}})) end, "must hold integers", "float ids")
T.raises(function() m:forward({}) end, "", "empty ids")
T.raises(function() m:generate({{2, 3}, {4, 5}}) end, "one prompt", "batch generate")
T.raises(function() m:generate({2, 3}, {temperature = 0}) end, "temperature 0", "temperature")
T.raises(function() m:generate({2, 3}, {top_p = 2}) end, "top_p 2", "top_p")
T.raises(function() m:generate({2, 3}, {top_k = -1}) end, "top_k -1", "top_k")
T.raises(function() m:generate({2, 3}, {max_new_tokens = 60}) end,
         "exceeds max_position_embeddings 48", "too many new tokens")
T.raises(function() m:forward(chai.tensor({2}, "i32"):view({1, 1}), {attention_mask = 3}) end,
         "", "bad mask type")
T.raises(function() chai.opt.load(tmp .. "/nothing-here") end, "nothing-here", "missing folder")
T.raises(function() chai.opt.load(FIX .. "postln/st", {dtype = "i8"}) end, "dtype i8", "bad dtype")
T.raises(function() chai.opt.load(FIX .. "postln/st", {device = "cuda"}) end,
         "unknown option 'device'", "unknown load option")
T.raises(function() chai.opt.create({vocab_size = 40}) end, "missing key", "create needs shapes")
local cfgdir = tmp .. "/badcfg"
os.execute("mkdir -p '" .. cfgdir .. "'")
T.write_bytes(cfgdir .. "/config.json", '{"vocab_size": 80, "hidden_size": 30, "num_hidden_layers": 2,'
  .. ' "num_attention_heads": 4, "ffn_dim": 48, "max_position_embeddings": 48}')
T.raises(function() chai.opt.load(cfgdir) end,
         {"hidden_size 30 is not divisible by num_attention_heads 4"}, "bad config")
m2:free()
T.raises(function() return m2:forward(x) end, "model used after free", "use after free")
T.raises(function() return m2.config end, "model used after free", "config after free")
m2:free() -- idempotent
do
  local scoped <close> = chai.opt.load(FIX .. "preln/st", {quiet = true})
  T.eq(#scoped:forward({{2, 3}}):shape(), 3, "to-be-closed model")
end

T.finish()
