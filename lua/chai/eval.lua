-- chai.eval: zero-shot multiple choice scored exactly as lm-evaluation-harness does it, and
-- classification-head evaluation, with the same metrics for both.
--
-- Harness rules (REFERENCE.md §3): each choice is a request (context, " " .. choice); trailing
-- whitespace of the context moves into the continuation (_encode_pair); the continuation tokens are
-- those of enc(context .. continuation) past len(enc(context)); the score is the summed
-- log-probability of the continuation tokens; acc = argmax(ll), acc_norm = argmax(ll / #choice)
-- with #choice the choice's length in characters (UTF-8 code points). No BOS by default, as in the
-- published 2023 OPT tables; opts.add_bos = true matches harness v0.4.9.2+.
local data = require "chai.data"
local json = require("chai.core").json
local bench = require("chai.core").bench

local M = {}

M.templates = {
  sst2 = {
    text = function(d) return d.sentence .. "\nQuestion: Is this sentence positive or negative?\nAnswer:" end,
    choices = function() return {"negative", "positive"} end,
    target = function(d) return d.label end,
    metrics = {"acc"},
  },
  rte = {
    text = function(d) return d.sentence1 .. "\nQuestion: " .. d.sentence2 .. " True or False?\nAnswer:" end,
    choices = function() return {"True", "False"} end, -- label 0 = entailment → "True"
    target = function(d) return d.label end,
    metrics = {"acc"},
  },
  piqa = {
    text = function(d) return "Question: " .. d.goal .. "\nAnswer:" end,
    choices = function(d) return {d.sol1, d.sol2} end,
    target = function(d) return d.label end,
    metrics = {"acc", "acc_norm"},
  },
}
M.target_delimiter = " "
M.max_length = 2048

--- _encode_pair: (context ids, continuation ids) as the harness forms them.
function M.encode_pair(tok, context, continuation, opts)
  local n_space = #context:match("%s*$")
  if n_space > 0 then
    continuation = context:sub(-n_space) .. continuation
    context = context:sub(1, -n_space - 1)
  end
  local add_bos = opts and opts.add_bos or false
  local whole = tok:encode(context .. continuation, {add_bos = add_bos})
  local ctx = tok:encode(context, {add_bos = add_bos})
  local cont = {}
  for i = #ctx + 1, #whole do cont[#cont + 1] = whole[i] end
  return ctx, cont
end

local function utf8_len(s)
  local n = utf8.len(s)
  return n or #s -- invalid UTF-8: count bytes
end

local function percentile(sorted, p)
  if #sorted == 0 then return 0 end
  local idx = math.max(1, math.min(#sorted, math.ceil(p * #sorted)))
  return sorted[idx]
end

local function peak_rss_bytes()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local text = f:read("a"); f:close()
  local kb = text:match("VmHWM:%s*(%d+)")
  return kb and tonumber(kb) * 1024 or nil
end

local function model_bytes(model)
  local ok, mem = pcall(function() return model:memory() end)
  if ok and type(mem) == "table" then return mem.weights end
  return nil
end

--- Left-truncates a context so context + a continuation of cont_len tokens fit max_length
--- positions (the harness feeds (ctx .. cont)[-(max_length + 1):][:-1]).
local function fit(ctx, cont_len, max_length)
  local over = #ctx + cont_len - 1 - max_length
  if over <= 0 then return ctx end
  local out = {}
  for i = over + 1, #ctx do out[#out + 1] = ctx[i] end
  return out
end

--- Scores requests grouped by item: items[i] = {ctx = ids, conts = {ids, ids, ...}}. Returns, per
--- item, per choice: {ll = summed log-prob, greedy = bool}. Uses the model's C scorer, which
--- runs each item's context once into the KV cache and then each continuation from it.
function M.score_items(model, items)
  local ctxs, conts = {}, {}
  for i, it in ipairs(items) do ctxs[i] = it.ctx; conts[i] = it.conts end
  return model:score_continuations(ctxs, conts)
end

--- Summed log-probability of `continuation` after `context`, and whether every continuation
--- token is the greedy (argmax) choice.
function M.loglikelihood(model, tok, context, continuation, opts)
  local ctx, cont = M.encode_pair(tok, context, continuation, opts)
  if #cont == 0 then error("chai.eval.loglikelihood: the continuation encodes to no tokens", 2) end
  ctx = fit(ctx, #cont, (opts and opts.max_length) or M.max_length)
  if #ctx == 0 then error("chai.eval.loglikelihood: the context encodes to no tokens (a model needs one position to predict from; pass add_bos=true)", 2) end
  local res = M.score_items(model, {{ctx = ctx, conts = {cont}}})
  return res[1][1].ll, res[1][1].greedy
end

local function check_opts(opts, known, fname)
  for k in pairs(opts) do
    if not known[k] then error(string.format("%s: unknown option '%s'", fname, tostring(k)), 3) end
  end
end

local function finish_metrics(res, latencies_item, latencies_batch, t_total, model, out_path)
  table.sort(latencies_item); table.sort(latencies_batch)
  res.latency_ms = {
    item_median = 1000 * percentile(latencies_item, 0.5), item_p90 = 1000 * percentile(latencies_item, 0.9),
    batch_median = 1000 * percentile(latencies_batch, 0.5), batch_p90 = 1000 * percentile(latencies_batch, 0.9),
  }
  res.throughput_items_per_s = res.n / t_total
  res.seconds = t_total
  res.peak_rss_bytes = peak_rss_bytes()
  res.model_bytes = model_bytes(model)
  if out_path then
    local f, err = io.open(out_path, "w")
    if not f then error("chai.eval: cannot write '" .. out_path .. "': " .. tostring(err), 3) end
    f:write(json.encode(res, {indent = true}), "\n"); f:close()
  end
  return res
end

local function acc_stats(correct, n)
  local acc = n > 0 and correct / n or 0
  -- sample standard error of the mean, as the harness reports it
  local stderr = n > 1 and math.sqrt(acc * (1 - acc) / (n - 1)) or 0
  return acc, stderr
end

--- Zero-shot evaluation of `task` ("sst2", "rte", "piqa"). opts: limit=, batch_size= (items per
--- batch, default 8), split= (default "validation"), add_bos= (default false), out= (a JSON path),
--- data_dir=. Returns {task, n, acc, acc_stderr, [acc_norm, acc_norm_stderr], latency_ms = {...},
--- throughput_items_per_s, peak_rss_bytes, model_bytes, add_bos, source}.
function M.zeroshot(model, tok, task, opts)
  opts = opts or {}
  check_opts(opts, {limit = true, batch_size = true, split = true, add_bos = true, out = true,
                    data_dir = true, max_length = true}, "chai.eval.zeroshot")
  local tpl = M.templates[task]
  if not tpl then error("chai.eval.zeroshot: unknown task '" .. tostring(task) .. "' (known: piqa, rte, sst2)", 2) end
  local bs = opts.batch_size or 8
  if math.type(bs) ~= "integer" or bs < 1 then
    error("chai.eval.zeroshot: batch_size must be a positive integer, got " .. tostring(bs), 2)
  end
  local ds = data.task(task, opts.split or "validation", {data_dir = opts.data_dir})
  local docs = ds.rows
  local n = opts.limit and math.min(opts.limit, #docs) or #docs
  local enc_opts = {add_bos = opts.add_bos or false}
  local max_length = opts.max_length or M.max_length
  local correct, correct_norm = 0, 0
  local lat_item, lat_batch = {}, {}
  local t0 = bench.now()
  for start = 1, n, bs do
    local items, meta = {}, {}
    for i = start, math.min(start + bs - 1, n) do
      local d = docs[i]
      local context, choices = tpl.text(d), tpl.choices(d)
      local ctx_ids, conts = nil, {}
      for j, choice in ipairs(choices) do
        local ctx, cont = M.encode_pair(tok, context, M.target_delimiter .. choice, enc_opts)
        ctx_ids = ctx_ids or ctx
        conts[j] = cont
      end
      local longest = 0
      for _, c in ipairs(conts) do longest = math.max(longest, #c) end
      items[#items + 1] = {ctx = fit(ctx_ids, longest, max_length), conts = conts}
      meta[#meta + 1] = {choices = choices, target = tpl.target(d)}
    end
    local tb = bench.now()
    local scores = M.score_items(model, items)
    local dt = bench.now() - tb
    lat_batch[#lat_batch + 1] = dt
    for k, m in ipairs(meta) do
      lat_item[#lat_item + 1] = dt / #meta
      local best, best_norm, arg, arg_norm = -math.huge, -math.huge, 0, 0
      for j, choice in ipairs(m.choices) do
        local ll = scores[k][j].ll
        local norm = ll / utf8_len(choice)
        if ll > best then best, arg = ll, j - 1 end
        if norm > best_norm then best_norm, arg_norm = norm, j - 1 end
      end
      if arg == m.target then correct = correct + 1 end
      if arg_norm == m.target then correct_norm = correct_norm + 1 end
    end
  end
  local t_total = bench.now() - t0
  local res = {task = task, split = ds.split, n = n, add_bos = enc_opts.add_bos, source = ds.source,
               batch_size = bs}
  res.acc, res.acc_stderr = acc_stats(correct, n)
  for _, metric in ipairs(tpl.metrics) do
    if metric == "acc_norm" then res.acc_norm, res.acc_norm_stderr = acc_stats(correct_norm, n) end
  end
  return finish_metrics(res, lat_item, lat_batch, t_total, model, opts.out)
end

M.classify_text = {
  sst2 = function(d) return d.sentence end,
  rte = function(d) return d.sentence1 .. "\n" .. d.sentence2 end,
}

--- Evaluates a classification head (m:classify) on `task` ("sst2", "rte"); the same metrics as
--- zeroshot. opts: limit=, batch_size= (default 16), split=, add_bos= (default: the tokenizer's),
--- max_length= (default 128), out=, data_dir=.
function M.classify(model, tok, task, opts)
  opts = opts or {}
  check_opts(opts, {limit = true, batch_size = true, split = true, add_bos = true, out = true,
                    data_dir = true, max_length = true}, "chai.eval.classify")
  local text_of = M.classify_text[task]
  if not text_of then error("chai.eval.classify: unknown task '" .. tostring(task) .. "' (known: rte, sst2)", 2) end
  local bs = opts.batch_size or 16
  if math.type(bs) ~= "integer" or bs < 1 then
    error("chai.eval.classify: batch_size must be a positive integer, got " .. tostring(bs), 2)
  end
  local ds = data.task(task, opts.split or "validation", {data_dir = opts.data_dir})
  local n = opts.limit and math.min(opts.limit, #ds.rows) or #ds.rows
  local correct = 0
  local lat_item, lat_batch = {}, {}
  local t0 = bench.now()
  for start = 1, n, bs do
    local texts, labels = {}, {}
    for i = start, math.min(start + bs - 1, n) do
      texts[#texts + 1] = text_of(ds.rows[i]); labels[#labels + 1] = ds.rows[i].label
    end
    local tb = bench.now()
    local batch_opts = {pad = "left", max_length = opts.max_length or 128, truncation = true}
    if opts.add_bos ~= nil then batch_opts.add_bos = opts.add_bos end
    local ids, mask = tok:batch(texts, batch_opts)
    local logits = model:classify(ids, {attention_mask = mask})
    local rows = logits:totable()
    logits:free()
    local dt = bench.now() - tb
    lat_batch[#lat_batch + 1] = dt
    for k, row in ipairs(rows) do
      lat_item[#lat_item + 1] = dt / #rows
      local arg, best = 0, -math.huge
      for j, v in ipairs(row) do if v > best then best, arg = v, j - 1 end end
      if arg == labels[k] then correct = correct + 1 end
    end
  end
  local t_total = bench.now() - t0
  local res = {task = task, split = ds.split, n = n, source = ds.source, batch_size = bs, head = "classify"}
  res.acc, res.acc_stderr = acc_stats(correct, n)
  return finish_metrics(res, lat_item, lat_batch, t_total, model, opts.out)
end

return M
