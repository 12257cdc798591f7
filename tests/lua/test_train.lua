-- chai.train and the training methods of chai.Model on a tiny OPT and a toy task (label 1 when
-- token 7 occurs): forward_backward / grads / params / freeze, the trainer (learning, JSON Lines
-- log, early stopping), bit-identical resume, refusal of a checkpoint of another shape, and a NaN
-- loss that stops training with the last checkpoint intact.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"
local json = require("chai.core").json

local config = {vocab_size = 50, hidden_size = 16, num_hidden_layers = 2, num_attention_heads = 2,
                ffn_dim = 32, max_position_embeddings = 32, num_labels = 2}
local function model(seed, cfg) return chai.opt.create(cfg or config, {seed = seed or 1}) end

local function toy(n, seed)
  local rng, rows = chai.data.rng(seed), {}
  for i = 1, n do
    local ids, lab = {2}, 0
    for j = 2, 3 + rng(8) do
      ids[j] = 3 + rng(45)
      if ids[j] == 7 then lab = 1 end
    end
    rows[i] = {ids = ids, label = lab}
  end
  return rows
end
local train_rows, eval_rows = toy(300, 5), toy(100, 6)

-- ---- model methods ----
do
  local m = model()
  local ids, mask = {{2, 5, 6, 7, 8}, {2, 9, 10, 1, 1}}, {{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}}
  local loss, info = m:forward_backward{input_ids = ids, attention_mask = mask, labels = {1, 0},
                                        head = "classify"}
  T.check(loss > 0 and info.count == 2, "classify loss")
  local grads, params = m:grads(), m:params()
  local n = 0
  for name, p in pairs(params) do
    n = n + 1
    T.check(grads[name] ~= nil, "grad of " .. name)
    T.eq(grads[name]:shape(), p:shape(), "grad shape " .. name)
  end
  T.check(params["model.decoder.layers.0.self_attn.q_proj.weight"] ~= nil, "HF names")
  T.check(n > 20, "params")
  -- accumulation doubles, zero_grad clears
  local g1 = grads["score.weight"]:totable()
  m:forward_backward{input_ids = ids, attention_mask = mask, labels = {1, 0}, head = "classify"}
  local g2 = m:grads()["score.weight"]:totable()
  T.close(g2[1][1], 2 * g1[1][1], 1e-6 * math.abs(g1[1][1]) + 1e-9, "accumulates")
  m:zero_grad()
  T.eq(m:grads()["score.weight"]:sum(), 0, "zero_grad")
  -- lm head: labels are the ids, shifted inside
  local l2, i2 = m:forward_backward{input_ids = ids, attention_mask = mask, head = "lm"}
  T.eq(i2.count, 4 + 2, "lm counts real next tokens")
  T.check(math.abs(l2 - math.log(50)) < 1, "lm loss near log V for a random model")
  -- a teacher model (forward only) or teacher logits
  local teacher = model(2)
  local lk, ik = m:forward_backward{input_ids = ids, attention_mask = mask, labels = {1, 0},
                                    head = "classify", teacher = teacher, T = 2, alpha = 0.5}
  T.check(ik.kl > 0 and lk > 0, "kd with a teacher model")
  T.eq(teacher:train_memory().grads, 0, "the teacher holds no gradient memory")
  local tl = teacher:classify(ids, {attention_mask = mask})
  local lk2 = m:forward_backward{input_ids = ids, attention_mask = mask, labels = {1, 0},
                                 head = "classify", teacher = tl, T = 2, alpha = 0.5}
  T.close(lk2, lk, 1e-6, "teacher logits = teacher model")
  -- dropout: the masks follow the seed
  local d1 = m:forward_backward{input_ids = ids, attention_mask = mask, labels = {1, 0},
                                head = "classify", dropout = 0.3, dropout_seed = 5}
  local d2 = m:forward_backward{input_ids = ids, attention_mask = mask, labels = {1, 0},
                                head = "classify", dropout = 0.3, dropout_seed = 5}
  local d3 = m:forward_backward{input_ids = ids, attention_mask = mask, labels = {1, 0},
                                head = "classify", dropout = 0.3, dropout_seed = 6}
  T.check(d1 == d2 and d1 ~= d3, "dropout masks from the seed")
  T.raises(function() m:forward_backward{input_ids = ids, labels = {1, 0}, head = "classify",
                                         dropout = 1} end, {"dropout must be in [0, 1), got 1"})
  -- freezing
  m:freeze{layers = {1}, parts = {"attention", "ffn"}}
  local names, count = m:trainable()
  local frozen_q = true
  for _, nm in ipairs(names) do
    if nm == "model.decoder.layers.0.self_attn.q_proj.weight" then frozen_q = false end
  end
  T.check(frozen_q, "layer 1 attention frozen")
  T.check(m:grads()["model.decoder.layers.0.fc1.weight"] == nil, "frozen: no gradient memory")
  T.check(m:grads()["model.decoder.layers.1.fc1.weight"] ~= nil, "layer 2 still trainable")
  m:freeze{}
  local none, c0 = m:trainable()
  T.eq(#none, 0, "all frozen")
  T.eq(c0, 0, "no trainable values")
  m:unfreeze{parts = {"head"}}
  T.eq(m:trainable(), {"score.weight"}, "only the head")
  m:unfreeze{}
  local _, call = m:trainable()
  T.check(call > count, "unfreeze all")
  -- errors
  T.raises(function() m:forward_backward{input_ids = ids, head = "classify"} end, {"needs labels"})
  T.raises(function() m:forward_backward{input_ids = ids, labels = {1, 2}, head = "classify"} end,
           {"label 2 in row 2 is outside 0..1"})
  T.raises(function() m:forward_backward{input_ids = {{2, 50}}, head = "lm"} end,
           {"input_ids[1][2] = 50 is outside the vocabulary 0..49"})
  T.raises(function() m:forward_backward{input_ids = ids, head = "seq2seq"} end, {"unknown head 'seq2seq'"})
  T.raises(function() m:forward_backward{input_ids = ids, attention_mask = {{1, 2, 1, 1, 1}, {1, 1, 1, 1, 1}}} end,
           {"attention_mask[1][2] = 2"})
  T.raises(function() m:forward_backward{input_ids = ids, labels = {1, 0}, head = "classify",
                                         teacher = chai.zeros({2, 3})} end, {"teacher logits have shape (2,3)"})
  T.raises(function() m:forward_backward{input_ids = ids, labels = {1, 0}, head = "classify", teacher = m} end,
           {"the teacher is the student itself"})
  T.raises(function() m:freeze{layers = {3}} end, {"layers[1] = 3 is not a layer 1..2"})
  T.raises(function() m:freeze{parts = {"mlp"}} end, {"unknown part 'mlp'"})
  T.raises(function() m:forward_backward{input_ids = ids, lables = {1, 0}} end, {"unknown option 'lables'"})
end

-- ---- the trainer ----
local tmp = T.tmpdir()
do
  local m = model()
  local log = tmp .. "/run1.jsonl"
  local res = chai.train.run{model = m, train = train_rows, eval = eval_rows, epochs = 10,
                             batch_size = 16, optimizer = {lr = 3e-3}, eval_every = 50,
                             log = log, progress = false, seed = 3}
  T.eq(res.step, 190, "steps = epochs x batches")
  T.check(res.eval.accuracy >= 0.9, "learns the toy task: " .. res.eval.accuracy)
  local steps, evals = 0, 0
  for line in io.lines(log) do
    local r = json.decode(line)
    if r.eval then evals = evals + 1 else steps = steps + 1 end
    if r.step == 1 and not r.eval then T.check(r.lr == 0 and r.loss > 0, "first record") end
  end
  T.eq(steps, 190, "one log line per step")
  T.eq(evals, 4, "evaluations at 50, 100, 150 and the end")
  -- early stopping: patience 1 with a min_delta nothing reaches
  local m2 = model()
  local r2 = chai.train.run{model = m2, train = train_rows, eval = eval_rows, epochs = 10,
                            batch_size = 16, eval_every = 20, progress = false,
                            early_stopping = {patience = 1, min_delta = 2}}
  T.eq(r2.stopped, "early_stopping", "early stopping")
  T.eq(r2.step, 40, "stopped at the second evaluation")
end

-- the LM head: a tiny model learns to continue counting sequences (eval = mean next-token loss)
do
  local m = model(8)
  local rows = {}
  for k = 1, 64 do
    local ids, start = {2}, 3 + k % 20
    for t = 0, 6 + k % 4 do ids[#ids + 1] = start + t end
    rows[k] = {ids = ids}
  end
  local before = chai.train.evaluate(m, rows, {head = "lm"})
  local res = chai.train.run{model = m, head = "lm", train = rows, eval = rows, epochs = 15,
                             batch_size = 8, optimizer = {lr = 1e-2}, progress = false}
  T.check(before.loss > 3 and res.eval.loss < 1.0,
          string.format("lm learns: %.3f -> %.3f", before.loss, res.eval.loss))
  T.check(res.eval.accuracy == nil and res.eval.count > 400, "lm eval counts next tokens")
end

-- resume: 6 steps in two runs of 3 = 6 steps in one run, bit for bit
do
  local opts = function(m, ck, extra)
    local o = {model = m, train = train_rows, eval = eval_rows, max_steps = 6, batch_size = 8,
               optimizer = {lr = 1e-2, schedule = "cosine", warmup = 2}, checkpoint = ck,
               progress = false, seed = 9, save_every = 3, dropout = 0.1, ema = 0.9}
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end
  local a = model(4)
  chai.train.run(opts(a, tmp .. "/ckA"))
  local b = model(4)
  local rb = chai.train.run(opts(b, tmp .. "/ckB", {stop_after = 3}))
  T.eq(rb.step, 3, "stopped after 3")
  b:free()
  local function saved_seconds()
    local f = assert(io.open(tmp .. "/ckB/last/trainer_state.json"))
    local st = require("chai.core").json.decode(f:read("a"))
    f:close()
    return st.seconds
  end
  local s1 = saved_seconds()
  T.check(type(s1) == "number" and s1 > 0, "the checkpoint records the run's seconds")
  local b2 = model(77) -- other weights: the checkpoint must overwrite them all
  local rb2 = chai.train.run(opts(b2, tmp .. "/ckB"))
  T.eq(rb2.step, 6, "resumed to the end")
  -- the reported time covers every segment (a run resumed at its last step still took time)
  T.check(rb2.seconds > s1, string.format("seconds count the first segment (%g > %g)", rb2.seconds, s1))
  local s2 = saved_seconds()
  local rb3 = chai.train.run(opts(model(5), tmp .. "/ckB"))
  T.eq(rb3.step, 6, "resumed at the end")
  T.check(s2 > s1 and rb3.seconds > s2,
          string.format("seconds count both segments (%g > %g > %g)", rb3.seconds, s2, s1))
  local pa, pb = a:params(), b2:params()
  local same = true
  for name, t in pairs(pa) do
    if not T.deep_eq(t:totable(), pb[name]:totable()) then
      same = false
      T.check(false, "resumed " .. name .. " differs")
    end
  end
  T.check(same, "bit-identical resume")
  -- a checkpoint of another shape is refused, naming the key
  local cfg2 = {}
  for k, v in pairs(config) do cfg2[k] = v end
  cfg2.hidden_size = 32
  T.raises(function() chai.train.run(opts(model(1, cfg2), tmp .. "/ckB")) end,
           {"hidden_size = 16", "this model has 32", "refusing to resume"})
  T.raises(function() chai.train.run(opts(model(4), tmp .. "/ckB", {max_steps = 7})) end,
           {"made for 6 steps, this run has 7"})
  -- without the average the same run ends elsewhere: the model leaves with the averaged weights
  local c = model(4)
  chai.train.run(opts(c, tmp .. "/ckC", {ema = false}))
  T.check(not T.deep_eq(c:params()["score.weight"]:totable(), pa["score.weight"]:totable()),
          "ema changes the final weights")
  T.raises(function() chai.train.run(opts(model(4), tmp .. "/ckD", {ema = 1.5})) end,
           {"ema must be a decay in (0, 1)"})
end

-- a NaN loss stops training; the last checkpoint stays as it was
do
  local m = model(5)
  local ck = tmp .. "/ckN"
  local ok, err = pcall(chai.train.run, {model = m, train = train_rows, max_steps = 10,
    batch_size = 8, checkpoint = ck, save_every = 2, progress = false,
    on_step = function(info)
      if info.step == 3 then m:params()["model.decoder.final_layer_norm.weight"]:fill(0 / 0) end
    end})
  T.check(not ok, "NaN stops training")
  T.check(tostring(err):find("the loss is", 1, true) and tostring(err):find("at step 4", 1, true),
          "message names the step: " .. tostring(err))
  T.check(tostring(err):find("last good checkpoint is " .. ck .. "/last (step 2)", 1, true),
          "message names the checkpoint")
  local f = assert(io.open(ck .. "/last/trainer_state.json"))
  local st = json.decode(f:read("a"))
  f:close()
  T.eq(st.step, 2, "checkpoint intact")
end

-- encode: truncation, BOS from the tokenizer, the optional EOS (a stand-in tokenizer)
do
  local tok = {encode = function(_, text, o)
    local ids = o.add_bos and {2} or {}
    for w in text:gmatch("%S+") do ids[#ids + 1] = #w + 3 end
    return ids
  end}
  local rows = {{sentence = "a bb ccc dddd", label = 1}, {sentence = "x", label = 0}}
  local e = chai.train.encode(rows, tok, {max_length = 4})
  T.eq(e[1].ids, {2, 4, 5, 6}, "truncated after BOS")
  T.eq(e[2], {ids = {2, 4}, label = 0}, "short row")
  local e2 = chai.train.encode(rows, tok, {max_length = 4, add_eos = true})
  T.eq(e2[1].ids, {2, 4, 5, 2}, "EOS after truncation")
  T.eq(e2[2].ids, {2, 4, 2}, "EOS appended")
  T.raises(function() chai.train.encode({{text = "x"}}, tok) end, {"row 1 has no text (sentence)"})
  T.raises(function() chai.train.encode(rows, tok, {max_len = 3}) end, {"unknown option 'max_len'"})
end

-- option errors
T.raises(function() chai.train.run{model = model(), train = train_rows, bach_size = 4} end,
         {"unknown option 'bach_size'"})
T.raises(function() chai.train.run{model = model(), train = {{text = "x"}}} end, {"must be encoded"})
T.raises(function() chai.train.run{model = model(), train = train_rows, head = "x"} end, {"head must be"})

T.finish()
