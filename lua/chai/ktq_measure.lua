-- chai.ktq.measure: every figure of a model on a task's validation split in one call, the split
-- the recipes never touch. Accuracy with its 95% interval; the paired difference against a
-- reference model with a paired-bootstrap interval; latency per sentence at batch 1 (p50/p90/p99
-- over the dev sentences at their real lengths); throughput at batch 16 and 64 with length
-- buckets; weight bytes by format; KV bytes per token; peak RSS. Every timing is repeated and
-- interleaved with the reference's (the order alternates), and medians are reported.
local core = require "chai.core"
local bench = core.bench
local data = require "chai.data"
local eval = require "chai.eval"
local util = require "chai.ktq_model"
local task_mod = require "chai.ktq_task"

local M = {}

local Z95 = 1.959963984540054

--- Wilson score interval of a proportion (95%).
function M.wilson(correct, n)
  if n == 0 then return 0, 0, 0 end
  local p = correct / n
  local z2 = Z95 * Z95
  local den = 1 + z2 / n
  local centre = (p + z2 / (2 * n)) / den
  local half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / den
  return p, math.max(0, centre - half), math.min(1, centre + half)
end

local function percentile(sorted, q)
  if #sorted == 0 then return nil end
  local idx = math.max(1, math.min(#sorted, math.ceil(q * #sorted)))
  return sorted[idx]
end

local function median(xs)
  local s = {table.unpack(xs)}
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return 0.5 * (s[n // 2] + s[n // 2 + 1])
end

--- Paired bootstrap of the accuracy difference a − b over the same items (a[i], b[i] are 0/1):
--- difference, and its 2.5% / 97.5% percentiles over `reps` resamples of the items (seeded).
function M.paired_bootstrap(a, b, reps, seed)
  local n = #a
  local diff = 0
  local d = {}
  for i = 1, n do d[i] = a[i] - b[i]; diff = diff + d[i] end
  diff = n > 0 and diff / n or 0
  local rng = data.rng(seed or 0)
  local stats = {}
  for r = 1, reps do
    local s = 0
    for _ = 1, n do s = s + d[rng(n)] end
    stats[r] = s / n
  end
  table.sort(stats)
  return diff, percentile(stats, 0.025) or 0, percentile(stats, 0.975) or 0
end

local function peak_rss()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil, nil end
  local text = f:read("a")
  f:close()
  local hwm, rss = text:match("VmHWM:%s*(%d+)"), text:match("VmRSS:%s*(%d+)")
  return hwm and tonumber(hwm) * 1024 or nil, rss and tonumber(rss) * 1024 or nil
end

-- Resets the peak RSS to the current RSS (Linux: "5" to /proc/self/clear_refs); false elsewhere.
local function reset_peak()
  local f = io.open("/proc/self/clear_refs", "w")
  if not f then return false end
  local ok = f:write("5")
  f:close()
  return ok and true or false
end

-- ---------------------------------------------------------------------------------------------
-- Classification: the model's score head on encoded dev rows.

local function pad_of(m)
  local p = m.config.pad_token_id
  return (p and p >= 0) and p or 1
end

--- Right-padded tensors of a batch of encoded rows ({ids = {...}}): input ids and attention mask
--- (i32, B × T), and T, the longest row's length.
function M.collate(rows, pad)
  local T = 1
  for _, r in ipairs(rows) do T = math.max(T, #r.ids) end
  local ids, mask = {}, {}
  for b, r in ipairs(rows) do
    ids[b], mask[b] = {}, {}
    for t = 1, T do
      ids[b][t] = r.ids[t] or pad
      mask[b][t] = r.ids[t] and 1 or 0
    end
  end
  return core.tensor(ids, "i32"), core.tensor(mask, "i32"), T
end

-- Length buckets: rows sorted by length (stable), cut into batches of bs; each batch pre-collated
-- so timing sees only the model.
local function bucketed(rows, bs, pad)
  local order = {}
  for i = 1, #rows do order[i] = i end
  table.sort(order, function(a, b)
    local la, lb = #rows[a].ids, #rows[b].ids
    if la ~= lb then return la < lb end
    return a < b
  end)
  local out, tokens, padded = {}, 0, 0
  for i = 1, #order, bs do
    local b = {}
    for j = i, math.min(i + bs - 1, #order) do b[#b + 1] = rows[order[j]] end
    local ids, mask, T = M.collate(b, pad)
    for _, r in ipairs(b) do tokens = tokens + #r.ids end
    padded = padded + T * #b
    out[#out + 1] = {ids = ids, mask = mask, n = #b, idx = {table.unpack(order, i, math.min(i + bs - 1, #order))}}
  end
  return out, tokens, padded
end

local function argmax(row)
  local best, arg = -math.huge, 0
  for j, v in ipairs(row) do if v > best then best, arg = v, j - 1 end end
  return arg
end

-- Classification driver: predict(m) → per-row 0/1 correct; one(m, i) runs row i alone;
-- pass(m, batches) runs a prepared set of batches.
local function classify_driver(task, rows)
  local d = {n = #rows}
  function d.predict(m)
    local bs = util.online(m) and 1 or 64
    local correct = {}
    for _, b in ipairs((bucketed(rows, bs, pad_of(m)))) do
      local scores = m:classify(b.ids, {attention_mask = b.mask}):totable()
      for k, i in ipairs(b.idx) do correct[i] = argmax(scores[k]) == rows[i].label and 1 or 0 end
    end
    return correct
  end
  local singles = {}
  for i, r in ipairs(rows) do singles[i] = core.tensor({r.ids}, "i32") end
  function d.one(m, i)
    local t0 = bench.now()
    m:classify(singles[i])
    return bench.now() - t0
  end
  function d.batches(m, bs)
    if util.online(m) then bs = 1 end -- online membership takes one prompt at a time
    local b, tokens, padded = bucketed(rows, bs, pad_of(m))
    return b, tokens, padded, bs
  end
  function d.pass(m, batches)
    local t0 = bench.now()
    for _, b in ipairs(batches) do m:classify(b.ids, {attention_mask = b.mask}) end
    return bench.now() - t0
  end
  function d.tokens(i) return #rows[i].ids end
  return d
end

-- ---------------------------------------------------------------------------------------------
-- Zero-shot multiple choice (PIQA): chai.eval's harness scoring, item by item.

local function fit(ctx, cont_len, max_length)
  local over = #ctx + cont_len - 1 - max_length
  if over <= 0 then return ctx end
  return {table.unpack(ctx, over + 1, #ctx)}
end

local function zeroshot_driver(task, docs, opts)
  local tpl = eval.templates[task.name]
  local tok = task.tokenizer
  if not tok then error("chai.ktq.measure: task " .. task.name .. " needs a tokenizer", 0) end
  local items, meta = {}, {}
  for i, d in ipairs(docs) do
    local context, choices = tpl.text(d), tpl.choices(d)
    local ctx_ids, conts, longest = nil, {}, 0
    for j, choice in ipairs(choices) do
      local c, cont = eval.encode_pair(tok, context, eval.target_delimiter .. choice, {add_bos = opts.add_bos})
      ctx_ids = ctx_ids or c
      conts[j] = cont
      longest = math.max(longest, #cont)
    end
    items[i] = {ctx = fit(ctx_ids, longest, eval.max_length), conts = conts}
    meta[i] = {choices = choices, target = tpl.target(d)}
  end
  local d = {n = #items, zeroshot = true}
  local function ntok(i)
    local n = #items[i].ctx
    for _, c in ipairs(items[i].conts) do n = n + #c end
    return n
  end
  function d.predict(m)
    local correct, correct_norm = {}, {}
    for s = 1, #items, 16 do
      local chunk = {table.unpack(items, s, math.min(s + 15, #items))}
      local res = eval.score_items(m, chunk)
      for k, r in ipairs(res) do
        local i = s + k - 1
        local best, bn, arg, argn = -math.huge, -math.huge, 0, 0
        for j, choice in ipairs(meta[i].choices) do
          local ll = r[j].ll
          local norm = ll / (utf8.len(choice) or #choice)
          if ll > best then best, arg = ll, j - 1 end
          if norm > bn then bn, argn = norm, j - 1 end
        end
        correct[i] = arg == meta[i].target and 1 or 0
        correct_norm[i] = argn == meta[i].target and 1 or 0
      end
    end
    return correct, correct_norm
  end
  function d.one(m, i)
    local t0 = bench.now()
    eval.score_items(m, {items[i]})
    return bench.now() - t0
  end
  function d.batches(_, bs)
    local order = {}
    for i = 1, #items do order[i] = i end
    table.sort(order, function(a, b) local x, y = ntok(a), ntok(b); if x ~= y then return x < y end return a < b end)
    local out, tokens = {}, 0
    for s = 1, #order, bs do
      local b = {}
      for j = s, math.min(s + bs - 1, #order) do b[#b + 1] = items[order[j]]; tokens = tokens + ntok(order[j]) end
      out[#out + 1] = {items = b, n = #b}
    end
    return out, tokens, tokens, bs
  end
  function d.pass(m, batches)
    local t0 = bench.now()
    for _, b in ipairs(batches) do eval.score_items(m, b.items) end
    return bench.now() - t0
  end
  d.tokens = ntok
  return d
end

-- ---------------------------------------------------------------------------------------------

local KNOWN = {reference = true, limit = true, repeats = true, batch_sizes = true, latency = true,
               throughput = true, bootstrap = true, seed = true, latency_rows = true, add_bos = true,
               rss = true}

local function accuracy_block(correct)
  local c = 0
  for _, v in ipairs(correct) do c = c + v end
  local p, lo, hi = M.wilson(c, #correct)
  return {value = p, low = lo, high = hi, correct = c, n = #correct, interval = "wilson 95%"}
end

--- All metrics of `m` on task's validation split (see the file comment). opts: reference (a model
--- to pair with: paired difference, interleaved timings, ratios), limit (first N dev rows),
--- repeats [3], batch_sizes [{16, 64}], latency [true], throughput [true], latency_rows (cap on
--- the rows timed at batch 1 [all]), bootstrap (resamples [2000]), seed [0], add_bos (zero-shot
--- [false]), rss [true]. Returns a table of plain values (JSON-ready).
function M.measure(m, task, opts)
  local fname = "chai.ktq.measure"
  opts = util.check_opts(fname, opts, KNOWN)
  if not task_mod.is_task(task) then error(fname .. ": the task must come from chai.ktq.task", 2) end
  local ref = opts.reference
  if ref ~= nil and type(ref) ~= "userdata" then error(fname .. ": reference must be a chai.Model", 2) end
  local repeats = opts.repeats or 3
  util.check_count(fname .. ": repeats", repeats)
  local sizes = opts.batch_sizes or {16, 64}
  for i, bs in ipairs(sizes) do util.check_count(("%s: batch_sizes[%d]"):format(fname, i), bs) end
  local t_start = bench.now()
  local rows = task.dev.rows
  if opts.limit then
    util.check_count(fname .. ": limit", opts.limit)
    rows = {table.unpack(rows, 1, math.min(opts.limit, #rows))}
  end
  local d
  if task.kind == "classify" then
    local ds = task_mod.user_dataset(task, rows, "metrics")
    ds.split = "validation"
    d = classify_driver(task, task:encode(ds))
  else
    d = zeroshot_driver(task, rows, opts)
  end
  local out = {task = task.name, split = "validation", n = d.n, threads = core.threads(),
               repeats = repeats}
  -- Accuracy (and the paired difference)
  local correct, correct_norm = d.predict(m)
  out.accuracy = accuracy_block(correct)
  if correct_norm then out.acc_norm = accuracy_block(correct_norm) end
  if ref then
    local rc, rcn = d.predict(ref)
    local diff, lo, hi = M.paired_bootstrap(correct, rc, opts.bootstrap or 2000, opts.seed)
    local both, only_m, only_r, none = 0, 0, 0, 0
    for i = 1, #correct do
      if correct[i] == 1 and rc[i] == 1 then both = both + 1
      elseif correct[i] == 1 then only_m = only_m + 1
      elseif rc[i] == 1 then only_r = only_r + 1
      else none = none + 1 end
    end
    out.paired = {reference_accuracy = accuracy_block(rc).value, difference = diff, low = lo, high = hi,
                  bootstrap = opts.bootstrap or 2000, interval = "paired bootstrap 95%",
                  both_right = both, only_model = only_m, only_reference = only_r, both_wrong = none}
    if rcn then
      local dn, lon, hin = M.paired_bootstrap(correct_norm, rcn, opts.bootstrap or 2000, opts.seed)
      out.paired.acc_norm = {difference = dn, low = lon, high = hin}
    end
  end
  local models = {m}
  if ref then models[2] = ref end
  -- Latency at batch 1, real lengths, interleaved and repeated: per row, the median over repeats.
  if opts.latency ~= false then
    local n = math.min(d.n, opts.latency_rows or d.n)
    for _, mm in ipairs(models) do d.one(mm, 1) end -- warm-up
    local per = {{}, {}}
    for i = 1, n do
      local times = {{}, {}}
      for r = 1, repeats do
        local order = (i + r) % 2 == 0 and {1, 2} or {2, 1}
        for _, k in ipairs(order) do
          if models[k] then times[k][r] = d.one(models[k], i) end
        end
      end
      for k = 1, #models do per[k][i] = median(times[k]) end
    end
    local function summary(xs)
      local s = {table.unpack(xs)}
      table.sort(s)
      local sum = 0
      for _, x in ipairs(s) do sum = sum + x end
      return {p50 = 1000 * percentile(s, 0.5), p90 = 1000 * percentile(s, 0.9),
              p99 = 1000 * percentile(s, 0.99), mean = 1000 * sum / #s, rows = #s}
    end
    out.latency_ms = summary(per[1])
    if ref then out.reference_latency_ms = summary(per[2]) end
  end
  -- Throughput at each batch size over the whole split, length-bucketed, interleaved, medians.
  if opts.throughput ~= false then
    out.throughput, out.reference_throughput = {}, ref and {} or nil
    for _, bs in ipairs(sizes) do
      local prepared = {}
      for k, mm in ipairs(models) do
        local b, tokens, padded, used = d.batches(mm, bs)
        prepared[k] = {batches = b, tokens = tokens, padded = padded, bs = used}
        d.pass(mm, b) -- warm-up
      end
      local times = {{}, {}}
      for r = 1, repeats do
        local order = r % 2 == 1 and {1, 2} or {2, 1}
        for _, k in ipairs(order) do
          if models[k] then times[k][r] = d.pass(models[k], prepared[k].batches) end
        end
      end
      for k = 1, #models do
        local t = median(times[k])
        local p = prepared[k]
        local rec = {batch_size = bs, batch_size_used = p.bs ~= bs and p.bs or nil,
                     sentences_per_s = d.n / t, tokens_per_s = p.tokens / t, seconds = t,
                     batches = #p.batches, padding = p.padded > 0 and 1 - p.tokens / p.padded or 0}
        if k == 1 then out.throughput[#out.throughput + 1] = rec
        else out.reference_throughput[#out.reference_throughput + 1] = rec end
      end
    end
  end
  -- What the model weighs
  out.weight_bytes = util.weight_bytes(m)
  out.kv_bytes_per_token = util.kv_bytes_per_token(m)
  out.parameters = m:num_parameters()
  if ref then
    out.reference_weight_bytes = util.weight_bytes(ref)
    out.reference_kv_bytes_per_token = util.kv_bytes_per_token(ref)
    out.ratios = {weight_bytes = out.weight_bytes.total / out.reference_weight_bytes.total,
                  kv_bytes_per_token = out.kv_bytes_per_token / out.reference_kv_bytes_per_token}
    if out.latency_ms then out.ratios.latency_p50 = out.latency_ms.p50 / out.reference_latency_ms.p50 end
    if out.throughput then
      out.ratios.throughput = {}
      for i, t in ipairs(out.throughput) do
        out.ratios.throughput[i] = {batch_size = t.batch_size,
                                    ratio = t.sentences_per_s / out.reference_throughput[i].sentences_per_s}
      end
    end
  end
  -- Peak RSS over one pass of the model alone at the largest batch size (the process's: every
  -- model it holds counts).
  if opts.rss ~= false then
    collectgarbage() -- models and tensors nothing refers to any more are not counted
    local reset = reset_peak()
    local b = d.batches(m, sizes[#sizes])
    d.pass(m, b)
    local hwm, rss = peak_rss()
    out.peak_rss_bytes, out.rss_bytes, out.peak_rss_reset = hwm, rss, reset
  end
  out.seconds = bench.now() - t_start
  return out
end

return M
