-- Quantized OPT models from Lua (issue 11): m:quantize specs, m:formats(), memory by format,
-- logits close to f32, the int8 KV cache, saving and loading a quantized model bit-identically,
-- quantizing while loading, training through quantized frozen layers, and the errors.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"

local CFG = {vocab_size = 96, hidden_size = 64, num_hidden_layers = 3, num_attention_heads = 4,
             ffn_dim = 192, max_position_embeddings = 64, num_labels = 2}

local function model(extra, seed)
  local c = {}
  for k, v in pairs(CFG) do c[k] = v end
  for k, v in pairs(extra or {}) do c[k] = v end
  return chai.opt.create(c, {seed = seed or 7})
end

local function ids(B, Tn, salt)
  local r = {}
  for b = 1, B do
    r[b] = {2}
    for t = 2, Tn do r[b][t] = 3 + (b * 31 + t * 17 + salt) % 90 end
  end
  return r
end

local function max_abs(a, b)
  local worst, scale = 0, 0
  local function walk(x, y)
    if type(x) == "number" then
      local d = math.abs(x - y)
      if d > worst or d ~= d then worst = d ~= d and math.huge or d end
      if math.abs(y) > scale then scale = math.abs(y) end
    else
      for i = 1, #x do walk(x[i], y[i]) end
    end
  end
  walk(a, b)
  return worst, scale
end

local x = ids(3, 12, 1)

-- ---- formats and the spec's resolution ----------------------------------------------------------
do
  local m = model()
  local f0 = m:formats()
  T.eq(f0["model.decoder.layers.0.fc1.weight"], "f32", "a new model is f32")
  T.eq(f0.kv_cache, "f32", "f32 KV cache by default")
  T.check(m:quantize{default = "int8"} == m, "quantize returns the model")
  local f = m:formats()
  T.eq(f["model.decoder.layers.2.self_attn.q_proj.weight"], "int8", "default reaches q_proj")
  T.eq(f["model.decoder.embed_tokens.weight"], "int8", "default reaches the embeddings")
  T.eq(f["model.decoder.embed_positions.weight"], "int8", "and the positions")
  T.eq(f["score.weight"], "f32", "the score head changes only when named")
  m:quantize{layers = {[2] = {fc1 = "int4", default = "bf16"}, [3] = "f16"}, group = 32}
  f = m:formats()
  T.eq(f["model.decoder.layers.1.fc1.weight"], "int4", "layers[2].fc1")
  T.eq(f["model.decoder.layers.1.fc2.weight"], "bf16", "layers[2].default")
  T.eq(f["model.decoder.layers.2.self_attn.out_proj.weight"], "f16", "layers[3] as a string")
  T.eq(f["model.decoder.layers.0.fc1.weight"], "int8", "an unnamed layer keeps its format")
  local mem = m:memory()
  local sum = 0
  for fmt, bytes in pairs(mem.weights_by_format) do
    T.check(({f32 = 1, f16 = 1, bf16 = 1, int8 = 1, int4 = 1})[fmt] ~= nil, "format " .. fmt)
    sum = sum + bytes
  end
  T.eq(sum, mem.weights, "weights_by_format adds up to weights")
  T.check(mem.weights_by_format.int4 > 0 and mem.weights_by_format.bf16 > 0, "bytes per format")
end

-- ---- accuracy against f32: each format's logits close to the f32 model's ------------------------
do
  local ref = model():forward(x):totable()
  local tol = {bf16 = 0.03, int8 = 0.05, int4 = 0.35, f16 = 2e-3}
  for _, fmt in ipairs({"f16", "bf16", "int8", "int4"}) do
    for _, method in ipairs(fmt == "int4" and {"rtn", "mse"} or {"rtn"}) do
      local m = model():quantize{default = fmt, method = method, group = 32}
      local err, scale = max_abs(m:forward(x):totable(), ref)
      T.check(err <= tol[fmt] * scale, string.format("%s/%s logits within %.2f of f32 (err %.4g of %.4g)",
                                                     fmt, method, tol[fmt], err, scale))
    end
  end
    -- Bytes: int8 everywhere is about a quarter of f32 (scales included), int4 an eighth.
  local f32w = model():memory().weights
  local i8 = model():quantize{default = "int8", score = "int8"}:memory().weights
  local i4 = model():quantize{default = "int4", score = "int4", group = 32}:memory().weights
  -- (this tiny model's f32 LayerNorms and biases weigh more than a real model's)
  T.check(i8 < 0.29 * f32w, string.format("int8 bytes %.3f of f32", i8 / f32w))
  T.check(i4 < 0.18 * f32w, string.format("int4 g32 bytes %.3f of f32", i4 / f32w))
end

-- ---- decoding: the int8 KV cache, and one-token steps equal the batched forward ---------------
do
  local m = model():quantize{default = "int8", kv = "int8"}
  T.eq(m:formats().kv_cache, "int8", "kv_cache int8")
  local f32kv = model():quantize{default = "int8"}
  T.check(m:decode_bytes(100) < f32kv:decode_bytes(100), "int8 cache reads fewer bytes")
  local prompt = ids(1, 10, 3)[1]
  local a = m:generate(prompt, {max_new_tokens = 8, eos_token_id = -1})
  local b = f32kv:generate(prompt, {max_new_tokens = 8, eos_token_id = -1})
  T.eq(#a, 8, "generated 8 tokens with an int8 cache")
  local same = 0
  for i = 1, 8 do if a[i] == b[i] then same = same + 1 end end
  T.check(same >= 6, "an int8 cache follows the f32 cache's greedy tokens (" .. same .. "/8)")
  -- int8 weights: a one-token forward equals the same token's row of a batched forward, bit for bit
  local one = m:forward({{2, 5}}):totable()[1][2]
  local two = m:forward({{2, 5}, {2, 5}}):totable()[2][2]
  T.eq(one, two, "int8 gemv and gemm rows agree exactly")
end

-- ---- save / load: bit-identical logits, quantize while loading ----------------------------------
do
  local m = model():quantize{default = "int4", group = 64, zero_point = true, scales = "f16",
                            layers = {[1] = "int8", [2] = {v = "bf16"}}, kv = "int8",
                            score = "int8"}
  local d = T.tmpdir()
  m:save(d)
  local m2 = chai.opt.load(d, {quiet = true})
  T.eq(m2:formats(), m:formats(), "formats survive save/load")
  T.eq(m2:forward(x):totable(), m:forward(x):totable(), "a reloaded quantized model: same bits")
  T.eq(m2:memory().weights, m:memory().weights, "same bytes after reload")
  -- Quantize while loading an f32 checkpoint: the same as loading then quantizing.
  local f = model()
  local d2 = T.tmpdir()
  f:save(d2)
  local spec = {default = "int8", layers = {[3] = {fc2 = "int4"}}}
  local ql = chai.opt.load(d2, {quiet = true, quant = spec})
  local qa = chai.opt.load(d2, {quiet = true}):quantize(spec)
  T.eq(ql:forward(x):totable(), qa:forward(x):totable(), "load{quant} == load + quantize")
  T.eq(ql:formats(), qa:formats(), "load{quant} formats")
end

-- ---- corrupt quantized checkpoints are refused with the reason -------------------------------
do
  local core = require "chai.core"
  local json = core.json
  local m = model():quantize{default = "int8", layers = {[2] = {fc1 = "int4"}}, group = 64}
  local good = T.tmpdir()
  m:save(good)
  local cfg_text = T.read_bytes(good .. "/config.json")
  local FC1 = "model.decoder.layers.1.fc1.weight"
  local Q = "model.decoder.layers.0.self_attn.q_proj.weight"
  -- variant(edit_tensors, edit_config): a copy of the good checkpoint with changes
  local function variant(edit_tensors, edit_config)
    local d = T.tmpdir()
    local ts = core.load_safetensors(good .. "/model.safetensors")
    if edit_tensors then edit_tensors(ts) end
    core.save_safetensors(d .. "/model.safetensors", ts)
    local cfg = json.decode(cfg_text)
    if edit_config then edit_config(cfg) end
    T.write_bytes(d .. "/config.json", json.encode(cfg))
    return d
  end
  local function refused(d, needles, what)
    T.raises(function() chai.opt.load(d, {quiet = true}) end, needles, what)
  end
  refused(variant(function(ts) ts[Q .. "_scale"] = chai.zeros({3}, "f32") end), {Q .. "_scale", "shape"},
          "an int8 scale of the wrong shape")
  refused(variant(function(ts) ts[Q .. "_scale"] = nil end), {Q .. "_scale"}, "a missing scale")
  refused(variant(function(ts) ts[Q] = chai.zeros({64, 10}, "i8") end), {Q, "shape", "(64,64)"},
          "a payload too short")
  refused(variant(function(ts) ts[FC1] = chai.zeros({192, 31}, "u8") end), {FC1, "shape"},
          "an int4 payload of the wrong (odd) length")
  refused(variant(function(ts) ts[Q] = chai.zeros({64, 64}, "f32") end), {Q, "dtype"},
          "an int8 payload of another dtype")
  refused(variant(nil, function(c) c.quantization_config.modules[Q].format = "int3" end),
          {Q, "int3"}, "an unknown format")
  refused(variant(nil, function(c) c.quantization_config.modules[FC1].group = 48 end),
          {FC1, "group", "48"}, "a bad group")
  refused(variant(nil, function(c) c.quantization_config.quant_method = "gptq" end),
          {"quant_method", "gptq"}, "another quant method")
  refused(variant(nil, function(c) c.quantization_config.modules["model.decoder.layers.9.fc1.weight"] =
                                     {format = "int8"} end),
          {"layers.9.fc1"}, "a module the model does not have")
end

-- ---- training through quantized frozen layers --------------------------------------------------
do
  local m = model():quantize{layers = {[1] = "int8", [2] = "int4"}, group = 32}
  T.raises(function() m:unfreeze{names = {"model.decoder.layers.0.fc1.weight"}} end,
           {"quantized", "int8", "layers.0.fc1.weight"}, "training a quantized matrix is refused")
  m:freeze()
  m:unfreeze{layers = {1}} -- a layer: its f32 parameters train, its quantized matrices stay frozen
  local names = m:trainable()
  T.check(#names == 10, "layer 1's biases and LayerNorms (" .. #names .. ")")
  local tr = m:trainable()
  for _, name in ipairs(tr) do
    T.check(not name:match("layers%.[01]%..*proj%.weight$") and not name:match("layers%.[01]%.fc%d%.weight$"),
            name .. " is trainable but quantized")
  end
end

-- Gradients through frozen quantized layers equal those of an f32 model whose frozen weights are
-- the dequantized ones, to float rounding: training multiplies by a frozen matrix's dequantized
-- values (the inference kernels' per-token activation rounding is not part of the trained function).
do
  local batch = {input_ids = ids(4, 10, 5), labels = {0, 1, 1, 0}, head = "classify"}
  local function flat(t, out)
    out = out or {}
    if type(t) == "table" then for _, v in ipairs(t) do flat(v, out) end else out[#out + 1] = t end
    return out
  end
  for _, fmt in ipairs({"f16", "bf16", "int8", "int4"}) do
    local a = model():quantize{layers = {[1] = fmt, [2] = fmt}, group = 32}
    local b = model()
    local pa, pb = a:params(), b:params()
    for name, f in pairs(a:formats()) do
      if name ~= "kv_cache" and f ~= "f32" then pb[name]:copy(pa[name]) end
    end
    local la, lb = a:forward_backward(batch), b:forward_backward(batch)
    T.close(la, lb, 1e-5, fmt .. ": the same loss")
    local ga, gb = a:grads(), b:grads()
    local n, worst = 0, 0
    for name, g in pairs(ga) do
      local x1, y1 = flat(g:totable()), flat(gb[name]:totable())
      local d, norm = 0, 0
      for k = 1, #x1 do d, norm = d + (x1[k] - y1[k]) ^ 2, norm + y1[k] ^ 2 end
      local rel = math.sqrt(d) / math.max(math.sqrt(norm), 1e-6)
      if rel > worst then worst = rel end
      n = n + 1
    end
    T.check(n > 10, fmt .. ": gradients of the trainable parameters exist (" .. n .. ")")
    T.check(ga["model.decoder.layers.0.fc1.weight"] == nil, fmt .. ": no gradient for a frozen matrix")
    T.check(ga["model.decoder.layers.0.fc1.bias"] ~= nil, fmt .. ": its bias still trains")
    T.check(worst <= 1e-4, string.format("%s: gradients equal the dequantized f32 model's (%.2e)",
                                        fmt, worst))
  end
end

-- ---- chai.quant.plan: sensitivity scores to a spec ---------------------------------------------
do
  local spec, tiers = chai.quant.plan({0.9, 0.1, 0.5, 0.5, 0.2, 0.7, 0.3, 0.4, 0.6, 0.8})
  -- 10 layers, high 0.3 → 3 (layers 1, 10, 6), low 0.3 → 3 (2, 5, 7), the rest medium
  T.eq(tiers.high, {1, 6, 10}, "high tier: the three highest scores")
  T.eq(tiers.low, {2, 5, 7}, "low tier: the three lowest")
  T.eq(spec.layers, {"f32", "int4", "int8", "int8", "int4", "f32", "int4", "int8", "int8", "f32"},
       "formats by tier")
  -- ties: the earlier layer ranks as more sensitive; a fraction rounds down but keeps one layer
  local s2, t2 = chai.quant.plan({1, 1, 1}, {high = 0.2, low = 0.2, formats = {high = "bf16", low = "int8", medium = "int8"}})
  T.eq({t2.high, t2.low}, {{1}, {3}}, "constant scores: by layer order, at least one layer each")
  T.eq(s2.layers, {"bf16", "int8", "int8"}, "given formats")
  local m = model():quantize(chai.quant.plan({0.3, 0.2, 0.1}, {high = 0.34, low = 0.34}))
  T.eq({m:formats()["model.decoder.layers.0.self_attn.q_proj.weight"],
        m:formats()["model.decoder.layers.2.fc2.weight"]}, {"f32", "int4"}, "a plan is a spec m:quantize takes")
  T.raises(function() chai.quant.plan({1, 2}, {formats = {low = "int2"}}) end, {"formats.low", "int2"}, "bad format")
  T.raises(function() chai.quant.plan({1, 2}, {high = 0.8, low = 0.5}) end, {"chai.quant.plan", "at most 1"}, "fractions")
  T.raises(function() chai.quant.plan({1, 0 / 0}) end, {"layer 2"}, "a NaN score")
  T.raises(function() chai.quant.plan({1, 2}, {hihg = 0.3}) end, {"hihg"}, "unknown option")
  T.check(type(chai.quant.kernels().int8) == "string", "chai.quant.kernels names the int8 kernel")
end

-- ---- errors name the bad value -------------------------------------------------------------------
do
  local m = model()
  T.raises(function() m:quantize{defualt = "int8"} end, {"unknown", "defualt"}, "unknown key")
  T.raises(function() m:quantize{default = "int3"} end, {"int3"}, "unknown format")
  T.raises(function() m:quantize{layers = {[4] = "int8"}} end, {"layers", "4", "1..3"}, "layer range")
  T.raises(function() m:quantize{layers = {[1] = {ffc1 = "int8"}}} end, {"ffc1"}, "layer key")
  T.raises(function() m:quantize{group = 48} end, {"group", "48"}, "group")
  T.raises(function() m:quantize{kv = "int4"} end, {"kv", "int4"}, "kv format")
  T.raises(function() m:quantize{method = "gptq"} end, {"method", "gptq"}, "method")
  T.raises(function() m:quantize{embeddings = "int8", lm_head = "f32"} end, {"lm_head", "tied"},
           "a tied LM head follows the embeddings")
  T.raises(function() m:quantize("int8") end, {"table"}, "spec must be a table")
  T.raises(function() chai.opt.load("/nonexistent", {quant = 3}) end, {"quant", "table"},
           "load quant option type")
end

T.finish()
