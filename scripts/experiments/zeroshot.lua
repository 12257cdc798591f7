-- Zero-shot evaluation, scored as lm-evaluation-harness scores multiple choice, dense or under
-- CHAI (clustered head attention) beside dense in the same run.
--   chai script experiments/zeroshot.lua --model facebook/opt-125m --task piqa
--   chai script experiments/zeroshot.lua --model facebook/opt-125m --task rte \
--     --heads-k 4 --heads-min-layer 7 --heads-mode static --save-plan rte.plan.json
-- Options:
--   --model M       a model folder or a Hub id (default facebook/opt-125m)
--   --tokenizer T   a tokenizer folder or Hub id (default: the model's)
--   --task T        piqa, rte, sst2 or all (default piqa)
--   --limit N       score only the first N items
--   --batch-size N  items per batch (default 8)
--   --bos           prepend </s> as harness v0.4.9.2+ does (default: off, as the 2023 OPT tables)
--   --dtype D       f32 (default), f16 or bf16 weights
--   --threads N     threads (default: all cores)
--   --out FILE      also write the metrics as JSON
-- CHAI (docs/eval.md "Under CHAI", docs/heads.md); any of these evaluates dense AND clustered:
--   --heads PLAN.json     a saved plan (chai.heads.save_plan), checked against the model's shape
--   --heads-k SPEC        calibrate on the task's train split and plan with k heads' clusters:
--                         K (every layer), "elbow" (kneedle per layer), or "L:K,A-B:K,..." (only
--                         the listed layers clustered)
--   --heads-min-layer L   layers below L stay dense (the paper's prune_layer)
--   --calib N             calibration texts: the first N of the train split (default 64)
--   --calib-tokens T      tokens per calibration text (default 32)
--   --calib-task T        calibrate on this task's train split instead (e.g. when PIQA's train
--                         split cannot be fetched)
--   --heads-mode M        static (default), online (batch size 1) or prune
--   --heads-keep M        prune: heads kept per cluster (default 1)
--   --save-plan FILE      write the plan used (one file per task when calibrating per task)
-- Published figures to compare with (harness, 0-shot, no BOS): OPT-125m PIQA acc 63.00 ± 1.13,
-- acc_norm 62.02; OPT-350m 64.36 / 64.74; OPT-1.3b 71.71 / 72.47.
local chai = require "chai"
local cli = require "chai.cli"

local PROG = "zeroshot.lua"
local usage = "usage: chai script experiments/zeroshot.lua [--model M] [--tokenizer T] [--task piqa|rte|sst2|all] " ..
              "[--limit N] [--batch-size N] [--bos] [--dtype D] [--threads N] [--out FILE]\n" ..
              "  [--heads PLAN.json | --heads-k K|elbow|L:K,A-B:K [--heads-min-layer L] [--calib N] " ..
              "[--calib-tokens T] [--calib-task T]]\n" ..
              "  [--heads-mode static|online|prune] [--heads-keep M] [--save-plan FILE]"

-- Bad usage: one line naming the value, exit 2, no traceback.
local function fail(msg, show_usage)
  cli.fail(PROG .. ": " .. msg .. (show_usage and " (--help shows the usage)" or ""), 2)
end

local opts = {model = "facebook/opt-125m", task = "piqa", batch_size = 8}
local i = 1
local function value(name)
  local v = arg[i + 1]
  if v == nil then fail(name .. " needs a value", true) end
  i = i + 1
  return v
end
local function integer(name, min)
  local raw = value(name)
  local v = math.tointeger(tonumber(raw))
  min = min or 1
  if not v or v < min then
    fail(string.format("%s '%s': needs %s", name, raw, min == 1 and "a positive integer" or "an integer >= " .. min))
  end
  return v
end
local heads_opts = {}
while i <= #arg do
  local a = arg[i]
  if a == "--model" then opts.model = value(a)
  elseif a == "--tokenizer" then opts.tokenizer = value(a)
  elseif a == "--task" then opts.task = value(a)
  elseif a == "--limit" then opts.limit = integer(a)
  elseif a == "--batch-size" then opts.batch_size = integer(a)
  elseif a == "--bos" then opts.bos = true
  elseif a == "--dtype" then opts.dtype = value(a)
  elseif a == "--threads" then opts.threads = integer(a)
  elseif a == "--out" then opts.out = value(a)
  elseif a == "--heads" then opts.heads = value(a); heads_opts[#heads_opts + 1] = a
  elseif a == "--heads-k" then opts.heads_k = value(a); heads_opts[#heads_opts + 1] = a
  elseif a == "--heads-min-layer" then opts.min_layer = integer(a); heads_opts[#heads_opts + 1] = a
  elseif a == "--heads-mode" then opts.mode = value(a); heads_opts[#heads_opts + 1] = a
  elseif a == "--heads-keep" then opts.keep = integer(a); heads_opts[#heads_opts + 1] = a
  elseif a == "--calib" then opts.calib = integer(a); heads_opts[#heads_opts + 1] = a
  elseif a == "--calib-tokens" then opts.calib_tokens = integer(a, 2); heads_opts[#heads_opts + 1] = a
  elseif a == "--calib-task" then opts.calib_task = value(a); heads_opts[#heads_opts + 1] = a
  elseif a == "--save-plan" then opts.save_plan = value(a); heads_opts[#heads_opts + 1] = a
  elseif a == "-h" or a == "--help" then print(usage); os.exit(0)
  else fail("unknown option '" .. a .. "'", true) end
  i = i + 1
end
local tasks = opts.task == "all" and {"piqa", "rte", "sst2"} or {opts.task}
for _, t in ipairs(tasks) do
  if not chai.eval.templates[t] then fail("unknown task '" .. t .. "' (piqa, rte, sst2 or all)") end
end

-- --heads-k: "elbow", K, or a list "L:K,A-B:K" (1-based layers). Ranges are checked against the
-- model once it is loaded.
local function parse_heads_k(spec)
  if spec == "elbow" then return {elbow = true} end
  local k = math.tointeger(tonumber(spec))
  if k then return {all = k} end
  local per, order = {}, {}
  for item in (spec .. ","):gmatch("([^,]*),") do
    local a, b, kk = item:match("^%s*(%d+)%s*%-%s*(%d+)%s*:%s*(%d+)%s*$")
    if not a then
      a, kk = item:match("^%s*(%d+)%s*:%s*(%d+)%s*$")
      b = a
    end
    if not a then return nil end
    a, b, kk = math.tointeger(tonumber(a)), math.tointeger(tonumber(b)), math.tointeger(tonumber(kk))
    if b < a then fail(string.format("--heads-k '%s': layer range %d-%d is empty", spec, a, b)) end
    for l = a, b do
      if per[l] then fail(string.format("--heads-k '%s': layer %d is given twice", spec, l)) end
      per[l] = kk
      order[#order + 1] = l
    end
  end
  return {layers = per, order = order}
end

local chai_on = opts.heads ~= nil or opts.heads_k ~= nil
if opts.heads and opts.heads_k then fail("give --heads PLAN.json or --heads-k, not both") end
if not chai_on and #heads_opts > 0 then
  fail(heads_opts[1] .. " needs --heads PLAN.json or --heads-k K")
end
opts.mode = opts.mode or "static"
if opts.mode ~= "static" and opts.mode ~= "online" and opts.mode ~= "prune" then
  fail("unknown --heads-mode '" .. opts.mode .. "' (static, online or prune)")
end
if opts.keep and opts.mode ~= "prune" then
  fail("--heads-keep " .. opts.keep .. " applies to --heads-mode prune only")
end
opts.keep = opts.keep or 1
if opts.heads then
  for _, o in ipairs({{"--heads-min-layer", opts.min_layer}, {"--calib", opts.calib},
                      {"--calib-tokens", opts.calib_tokens}, {"--calib-task", opts.calib_task}}) do
    if o[2] ~= nil then fail(o[1] .. " applies to --heads-k (a plan file is used as it is)") end
  end
  local f, err = io.open(opts.heads, "rb")
  if not f then fail("--heads '" .. opts.heads .. "': cannot read the plan file (" .. tostring(err) .. ")") end
  f:close()
end
local kspec
if opts.heads_k then
  kspec = parse_heads_k(opts.heads_k)
  if not kspec then
    fail("--heads-k '" .. opts.heads_k .. "': expected K, elbow, or a list of LAYER:K / FIRST-LAST:K " ..
         "(e.g. 4, or 7-12:4, or 1:10,2:8)")
  end
  if kspec.all and kspec.all < 1 then fail("--heads-k '" .. opts.heads_k .. "': k must be >= 1") end
  if opts.calib_task and not chai.eval.templates[opts.calib_task] then
    fail("unknown --calib-task '" .. opts.calib_task .. "' (piqa, rte or sst2)")
  end
  opts.calib = opts.calib or 64
  opts.calib_tokens = opts.calib_tokens or 32
end
if opts.threads then chai.threads(opts.threads) end

local clean = cli.message

local function result_line(task, label, r)
  local line = string.format("%-5s %sn=%-5d acc %.2f ± %.2f", task, label and string.format("%-6s ", label) or "",
                             r.n, 100 * r.acc, 100 * r.acc_stderr)
  if r.acc_norm then line = line .. string.format("  acc_norm %.2f ± %.2f", 100 * r.acc_norm, 100 * r.acc_norm_stderr) end
  line = line .. string.format("  | %.1f items/s, item %.1f ms (p90 %.1f), peak RSS %.0f MB, BOS %s",
                               r.throughput_items_per_s, r.latency_ms.item_median, r.latency_ms.item_p90,
                               (r.peak_rss_bytes or 0) / 2^20, r.add_bos and "on" or "off")
  if label and r.batch_size then line = line .. ", batch " .. r.batch_size end
  return line
end

local function main()
  local model = chai.opt.load(opts.model, {dtype = opts.dtype})
  local cfg = model.config
  local L, H = cfg.num_hidden_layers, cfg.num_attention_heads
  local enc_opts = {add_bos = opts.bos or false}

  -- Checks of the CHAI options against the model's shape, before any work.
  local file_plan
  if chai_on and cfg.chai_attention_heads then
    fail(string.format("--model '%s' is already pruned (chai_attention_heads in its config): CHAI needs " ..
                       "the original model", opts.model))
  end
  if kspec then
    local function check_k(k, where)
      if k < 1 or k > H then
        fail(string.format("--heads-k '%s': k = %d%s is outside 1..%d (the model has %d heads per layer)",
                           opts.heads_k, k, where, H, H))
      end
    end
    if kspec.all then check_k(kspec.all, "") end
    for l, k in pairs(kspec.layers or {}) do
      if l < 1 or l > L then
        fail(string.format("--heads-k '%s': layer %d is outside 1..%d (the model has %d layers)",
                           opts.heads_k, l, L, L))
      end
      check_k(k, " for layer " .. l)
    end
    if opts.min_layer and opts.min_layer > L then
      fail(string.format("--heads-min-layer %d is outside 1..%d (the model has %d layers)", opts.min_layer, L, L))
    end
  elseif opts.heads then
    local ok, p = pcall(chai.heads.load_plan, opts.heads, {layers = L, heads = H})
    if not ok then
      local msg = clean(p)
      if msg:sub(1, #opts.heads + 2) == opts.heads .. ": " then msg = msg:sub(#opts.heads + 3) end
      fail(string.format("--heads '%s': %s (file numbers are 0-based; the model has %d layers × %d heads)",
                         opts.heads, msg, L, H))
    end
    if opts.mode ~= "online" then
      for _, e in ipairs(p.layers) do
        if not e.clusters then
          fail(string.format("--heads '%s': layer %d gives only k (0-based %d in the file); --heads-mode %s " ..
                             "needs its clusters (use --heads-mode online)", opts.heads, e.layer, e.layer - 1, opts.mode))
        end
      end
    end
    file_plan = p
  end

  local tok = chai.tokenizer.load(opts.tokenizer or opts.model)

  -- Plans made by calibration, one per calibration task.
  local calib_tasks, plans = {}, {}
  if kspec then
    local seen = {}
    for _, t in ipairs(tasks) do
      local ct = opts.calib_task or t
      if not seen[ct] then seen[ct] = true; calib_tasks[#calib_tasks + 1] = ct end
    end
  end
  local function plan_file_for(ct)
    if #calib_tasks <= 1 then return opts.save_plan end
    local stem, ext = opts.save_plan:match("^(.*)(%.[^./]*)$")
    if not stem then stem, ext = opts.save_plan, "" end
    return stem .. "." .. ct .. ext
  end
  local function calibrated_plan(ct)
    if plans[ct] then return plans[ct] end
    local ok, ds = pcall(chai.data.task, ct, "train")
    if not ok then
      cli.fail(string.format("%s: cannot read the %s train split for calibration: %s; calibrate on another " ..
                             "task's train split (--calib-task rte or sst2), or give a saved plan (--heads PLAN.json)",
                             PROG, ct, clean(ds)))
    end
    local tpl = chai.eval.templates[ct]
    local texts = {}
    for r = 1, math.min(opts.calib, #ds.rows) do texts[r] = tpl.text(ds.rows[r]) end
    -- Calibration texts are encoded as the evaluation encodes its contexts (BOS only with --bos).
    local enc = {encode = function(_, text) return tok:encode(text, enc_opts) end}
    local stats = chai.heads.calibrate(model, enc, texts, {tokens = opts.calib_tokens})
    local popts = {min_layer = opts.min_layer}
    if kspec.all then
      popts.override = {}
      for l = 1, L do popts.override[l] = kspec.all end
    elseif kspec.layers then
      popts.override, popts.skip_layers = kspec.layers, {}
      for l = 1, L do if not kspec.layers[l] then popts.skip_layers[#popts.skip_layers + 1] = l end end
    end
    local plan = chai.heads.plan(stats, popts)
    plan.meta.calibration = {task = ct, split = "train", source = ds.source, texts = #texts,
                             used = stats.n_samples, tokens = opts.calib_tokens, heads_k = opts.heads_k,
                             add_bos = enc_opts.add_bos}
    plans[ct] = plan
    if opts.save_plan then chai.heads.save_plan(plan, plan_file_for(ct)) end
    return plan
  end
  if file_plan and opts.save_plan then chai.heads.save_plan(file_plan, opts.save_plan) end
  -- Calibrate first: the model is dense, and a train split that cannot be read stops the run
  -- before any long evaluation.
  for _, ct in ipairs(calib_tasks) do calibrated_plan(ct) end

  local function describe(plan)
    local ks = {}
    for _, e in ipairs(plan.layers) do ks[#ks + 1] = e.layer .. ":" .. (e.k or #e.clusters) end
    if #ks == 0 then return "no layer clustered (every k equals the heads, or no layer listed): the same as dense" end
    return "k " .. table.concat(ks, " ") .. string.format(" (layer:k, %d of %d layers clustered, others dense)", #ks, L)
  end

  local dense_kv = model:memory().kv_cache_bytes_per_token
  local dense_params = model:num_parameters()
  local results, chai_tasks = {}, {}
  local online_said = false
  for _, task in ipairs(tasks) do
    local r = chai.eval.zeroshot(model, tok, task, {limit = opts.limit, batch_size = opts.batch_size,
                                                    add_bos = enc_opts.add_bos})
    results[task] = r
    print(result_line(task, chai_on and "dense" or nil, r))
    if chai_on then
      local plan, source
      if file_plan then
        plan, source = file_plan, opts.heads
      else
        local ct = opts.calib_task or task
        plan = calibrated_plan(ct)
        source = string.format("calibrated on %s train (%d texts × %d tokens), --heads-k %s%s", ct,
                               plan.meta.calibration.used, opts.calib_tokens, opts.heads_k,
                               opts.min_layer and (" --heads-min-layer " .. opts.min_layer) or "")
      end
      local what = describe(plan)
      print(string.format("%-5s plan   %s: %s", task, source, what))
      local target, bs = model, opts.batch_size
      if opts.mode == "prune" then
        local ok, small = pcall(chai.heads.prune, model, plan, {keep = opts.keep})
        if not ok then fail(string.format("--heads-mode prune: %s", clean(small))) end
        target = small
      else
        local ok, err = pcall(model.set_heads, model, plan, {mode = opts.mode})
        if not ok then fail(string.format("--heads-mode %s with plan %s: %s", opts.mode, source, clean(err))) end
        if opts.mode == "online" then
          bs = 1
          if not online_said then
            print("note: online mode chooses clusters per prompt, so it scores one item at a time (batch size 1" ..
                  (opts.batch_size ~= 1 and ", not " .. opts.batch_size or "") .. "); prompts under 6 tokens run dense")
            online_said = true
          end
        end
      end
      local kv, params = target:memory().kv_cache_bytes_per_token, target:num_parameters()
      local ok, rc = pcall(chai.eval.zeroshot, target, tok, task, {limit = opts.limit, batch_size = bs,
                                                                   add_bos = enc_opts.add_bos})
      if target ~= model then target:free() else model:set_heads(nil) end
      if not ok then error(rc, 0) end
      print(result_line(task, opts.mode, rc))
      local change = {acc = 100 * (rc.acc - r.acc)}
      local line = string.format("%-5s change acc %+.2f points", task, change.acc)
      if rc.acc_norm then
        change.acc_norm = 100 * (rc.acc_norm - r.acc_norm)
        line = line .. string.format(", acc_norm %+.2f points", change.acc_norm)
      end
      local kv_saved = 100 * (dense_kv - kv) / dense_kv
      line = line .. string.format(" | KV cache %d → %d bytes/token (%.1f%% saved)", dense_kv, kv, kv_saved)
      if opts.mode == "online" then line = line .. "; a prompt under 6 tokens runs dense with full-width K" end
      if opts.mode == "prune" then line = line .. string.format("; parameters %d → %d", dense_params, params) end
      print(line)
      chai_tasks[task] = {metrics = rc, change_points = change,
                          kv_cache_bytes_per_token = {dense = dense_kv, chai = kv}, kv_saved_percent = kv_saved,
                          parameters = {dense = dense_params, chai = params},
                          plan_source = source, plan = chai.json.decode(chai.heads.plan_json(plan))}
    end
  end
  if opts.out then
    local doc = {model = opts.model, results = results}
    if chai_on then
      doc.chai = {mode = opts.mode, keep = opts.mode == "prune" and opts.keep or nil, plan_file = opts.heads,
                  heads_k = opts.heads_k, min_layer = opts.min_layer, calib = opts.calib,
                  calib_tokens = opts.calib_tokens, calib_task = opts.calib_task,
                  batch_size = opts.mode == "online" and 1 or opts.batch_size, tasks = chai_tasks}
    end
    local f, err = io.open(opts.out, "w")
    if not f then error("cannot write --out '" .. opts.out .. "': " .. tostring(err), 0) end
    f:write(chai.json.encode(doc, {indent = true}), "\n")
    f:close()
  end
end

-- Errors while running (a model that cannot load, data that cannot be read): one line, exit 1.
cli.guard(PROG, main)
