-- scripts/experiments/quant_sst2.lua end to end on a tiny random classifier (the OPT tokenizer's
-- vocabulary, so the embeddings dominate as in the real student): every format's row is printed,
-- f32 against itself is exactly 0 (difference, interval, KL), the quantized rows carry a KL above
-- 0 and the weight share their formats imply, the JSON agrees with the table, and a bad option is
-- refused by name with status 2.
local chai = require "chai"
local T = require "helper"
local chai_bin = assert(os.getenv("CHAI_BUILD_DIR"), "CHAI_BUILD_DIR unset") .. "/chai"
local data = assert(os.getenv("CHAI_TEST_FIXTURES"), "CHAI_TEST_FIXTURES unset") .. "/data"
local tmp = T.tmpdir()
local m = chai.opt.create({vocab_size = 50272, hidden_size = 64, num_hidden_layers = 2,
                           num_attention_heads = 4, ffn_dim = 128, max_position_embeddings = 80,
                           num_labels = 2, init_std = 0.2}, {seed = 5})
m:save(tmp .. "/model")
m:free()
local function run(args)
  local p = io.popen(string.format("CHAI_DATA_DIR='%s' '%s' script experiments/quant_sst2.lua %s 2>&1; " ..
                                   "echo \"exit=$?\"", data, chai_bin, args))
  local text = p:read("a")
  p:close()
  return text, tonumber(text:match("exit=(%d+)"))
end
local text, code = run(string.format("--model '%s/model' --limit 24 --reps 200 --json '%s/q.json'",
                                     tmp, tmp))
T.eq(code, 0, "runs: " .. text)
local rows = {}
for line in text:gmatch("[^\n]+") do
  local name, share = line:match("^| ([^|]-) | .- | .- | .- | ([%d.]+)%% | .- |$")
  if name then rows[name] = {line = line, share = tonumber(share)} end
end
for _, name in ipairs({"f32", "bf16 everywhere", "int8 everywhere", "int8 everywhere, mse",
                       "int4 g32 rtn (embeddings int8)", "int4 g64 mse (embeddings int8)",
                       "int4 g128 rtn (embeddings int8)", "int4 g64 mse everywhere"}) do
  T.check(rows[name] ~= nil, "row printed: " .. name)
end
T.check(rows["f32"] and rows["f32"].line:find("| +0.00 (+0.00 … +0.00) | 0.00e+00 | 100.0% |", 1, true),
        "f32 against itself: no difference, no divergence, all the bytes: " .. tostring(rows["f32"] and rows["f32"].line))

local doc = chai.json.decode(T.read_bytes(tmp .. "/q.json"))
T.eq(doc.dev_rows, 24, "JSON: the dev rows evaluated")
local by = {}
for _, r in ipairs(doc.rows) do by[r.name] = r end
-- hidden 64: int8 rows cost 1 + 4/64 bytes a weight (an f32 scale per row), bf16 2, of f32's 4
T.close(by["int8 everywhere"].weight_share, (1 + 4 / 64) / 4, 0.01, "int8 weight share")
T.close(by["bf16 everywhere"].weight_share, 0.5, 0.01, "bf16 weight share")
T.check(by["int4 g32 rtn (embeddings int8)"].weight_share < by["int8 everywhere"].weight_share,
        "int4 layers shrink the model below int8 everywhere")
for name, r in pairs(by) do
  if name ~= "f32" then
    T.check(r.kl > 0 and r.kl < 1, name .. ": a small positive KL from f32 (" .. r.kl .. ")")
    T.check(r.diff_lo <= r.diff and r.diff <= r.diff_hi, name .. ": the difference inside its interval")
  end
  T.check(type(r.kernel) == "string" and #r.kernel > 0, name .. ": the kernel is named")
end
T.check(by["int4 g64 mse (embeddings int8)"].kl <= by["int4 g64 rtn (embeddings int8)"].kl * 1.5,
        "mse scales are not far worse than rtn")

local bad, bad_code = run("--groups 32")
T.eq(bad_code, 2, "an unknown option exits 2: " .. bad)
T.check(bad:find("--groups", 1, true) ~= nil, "the message names the option")
T.finish()
