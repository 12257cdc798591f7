-- chai.train: training from Lua. The numbers run in C (the OPT backward, the losses, the fused
-- optimizer update); this module feeds them batches and keeps the books.
--
--   chai.train.optimizer{...}            an optimizer with schedule and clipping (chai/optim.lua)
--   chai.train.schedule{kind=, warmup=, total=, min_ratio=}(step) --> lr factor
--   chai.train.encode(rows, tok, {text=, max_length=, add_bos=true}) --> {{ids=, label=}, ...}
--   chai.train.evaluate(m, rows, {head=, batch_size=}) --> {accuracy=, loss=, count=}
--   chai.train.annotate(rows, teacher_model) --> rows with .teacher logits (classify head)
--   chai.train.models_dir() / chai.train.cached_model(name) --> where trained models are kept
--   chai.train.run{model=, train=, eval=, ...}  --> {step=, epoch=, eval=, best=, history=, ...}
--
-- run's options (defaults in brackets):
--   model            a chai.Model (f32): trained in place
--   head             "classify" ["classify"] or "lm"
--   train, eval      encoded rows {ids = {...}, label = n} (see encode); eval may be nil
--   ema              average the weights (Polyak): ema <- d*ema + (1-d)*w after every step, with
--                    d = min(ema, (1+step)/(10+step)); evaluations, the best model and the
--                    final model use the average (the checkpoint keeps both) [off]
--   dropout          residual dropout p, as HF's OPT layers in training [0: off]; the masks are
--                    drawn from the seed and the step, so a resumed run draws the same ones
--   teacher, T, alpha, label_smoothing   distillation from another chai.Model (forward only), or
--                    teacher = "rows": logits stored in the rows by chai.train.annotate
--   batch_size [32], epochs [1] or max_steps, grad_accum [1], seed [0]
--   optimizer        chai.train.optimizer's options [{kind="adamw", lr=1e-3, schedule="linear",
--                    warmup=10% of the steps, max_grad_norm=1}]; total_steps is filled in
--   eval_every       evaluate every N optimizer steps (and at the end) [0: only at the end]
--   early_stopping   {patience=, metric="accuracy"|"loss", min_delta=0}: stop after `patience`
--                    evaluations without improvement
--   restore_best     keep a copy of the trainable parameters at the best evaluation (in memory)
--                    and put it back at the end, so the model leaves as it was at its best step
--                    [false; not with ema]
--   checkpoint       a folder: the last checkpoint goes to <folder>/last (weights, optimizer,
--                    trainer state), the best evaluated model to <folder>/best (HF layout)
--   save_every       steps between checkpoints [eval_every, or 0 = only at the end]
--   resume           continue from <checkpoint>/last when it exists [true]
--   log              a JSON Lines file (one record per step and per evaluation)
--   progress         a progress bar on stderr [when stderr is a terminal]
--   stop_after       stop after this many steps (the schedule still spans all of them)
--   time_budget      stop (after saving) once the run has taken this many seconds (a resumed run
--                    counts its earlier segments too; result.seconds is the whole run)
--   on_step          function(info) called after every step (info: step, loss, lr, ...)
--   distributed      data-parallel over the ranks of chai.mpi (mpirun/srun) [false]: each rank
--                    takes its contiguous share of every global batch (batch_size rows in all),
--                    the gradients are summed over the ranks in buckets while the backward runs,
--                    and every rank makes the same optimizer step; rank 1 alone writes the
--                    checkpoint, the best model, the log and the progress bar, and resumes (any
--                    rank count can resume any checkpoint). See docs/distributed.md.
--   bucket_mb        size of a gradient bucket in MiB [8] (distributed)
-- A NaN or Inf loss stops training with an error naming the step; the last checkpoint on disk
-- stays as it was. Resuming re-creates the same batches from the seed, so a resumed run continues
-- bit-identically. Resuming a checkpoint made for another model shape is refused.
local core = require "chai.core"
local optim = require "chai.optim"
local data = require "chai.data"
local mpi = require "chai.mpi"
local json = core.json

local M = {}

M.optimizer = optim.new

--- A schedule as a function step → factor (0-based steps; Hugging Face's warmup schedules).
function M.schedule(opts)
  local s = {kind = opts.kind or "constant", warmup = opts.warmup or 0, total = opts.total or 0,
             min_ratio = opts.min_ratio or 0}
  core.schedule_factor(s, 0) -- checks the fields now
  return function(step) return core.schedule_factor(s, step) end
end

local function check_opts(fname, opts, known)
  if type(opts) ~= "table" then error(fname .. ": options must be a table", 3) end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (known: %s)", fname, tostring(k),
                          table.concat(names, ", ")), 3)
    end
  end
end

-- ---------------------------------------------------------------------------------------------
-- Data

--- Tokenizes rows once: {ids = token ids (BOS first, at most max_length), label = row.label}.
--- opts.text is a field name ["sentence"] or a function(row) → string; opts.add_eos appends
--- eos_id [2, OPT's </s>] (after truncation), so a classifier reads the same summary token at
--- the end of every row.
function M.encode(rows, tok, opts)
  opts = opts or {}
  check_opts("chai.train.encode", opts, {text = true, max_length = true, add_bos = true,
                                         add_eos = true, eos_id = true})
  local text = opts.text or "sentence"
  local get = type(text) == "function" and text or function(r) return r[text] end
  local maxlen = opts.max_length or 128
  local out = {}
  for i, r in ipairs(rows) do
    local s = get(r)
    if type(s) ~= "string" then
      error(string.format("chai.train.encode: row %d has no text (%s)", i, tostring(text)), 2)
    end
    local ids = tok:encode(s, {add_bos = opts.add_bos ~= false})
    local keep = opts.add_eos and maxlen - 1 or maxlen
    if #ids > keep then
      local cut = {}
      for j = 1, keep do cut[j] = ids[j] end
      ids = cut
    end
    if opts.add_eos then ids[#ids + 1] = opts.eos_id or 2 end
    out[i] = {ids = ids, label = r.label}
  end
  return out
end

--- Adds each row's teacher logits (row.teacher, a table of num_labels numbers) from a model's
--- classify head, in length-sorted batches: distillation then costs no teacher forward per step
--- (run with teacher = "rows").
--- opts.distributed: each rank of chai.mpi computes every size-th row's logits and the ranks
--- exchange them (num_labels numbers a row), so every rank ends with all of them.
function M.annotate(rows, teacher, opts)
  opts = opts or {}
  local bs = opts.batch_size or 64
  local pad = teacher.config.pad_token_id or 1
  local n = mpi.size()
  if opts.distributed and n > 1 then
    local mine, at = mpi.deal(rows)
    M.annotate(mine, teacher, {batch_size = bs})
    local NL = teacher.config.num_labels -- HF configs say it with id2label
    if not NL then
      NL = 0
      for _ in pairs(teacher.config.id2label or {}) do NL = NL + 1 end
    end
    local tab = {}
    for i = 1, #rows do
      local z = {}
      for j = 1, NL do z[j] = 0 end
      tab[i] = z
    end
    for k, r in ipairs(mine) do tab[at[k]] = r.teacher end
    local all = core.tensor(tab, "f32") -- zeros in the others' rows: the sum over ranks is exact
    mpi.allreduce(all, "sum")
    for i, row in ipairs(all:totable()) do rows[i].teacher = row end
    return rows
  end
  local batches = data.batches(rows, {batch_size = bs, length = function(r) return #r.ids end})
  for _, batch in ipairs(batches) do
    local T = 1
    for _, r in ipairs(batch) do if #r.ids > T then T = #r.ids end end
    local ids, mask = {}, {}
    for b, r in ipairs(batch) do
      ids[b], mask[b] = {}, {}
      for t = 1, T do
        ids[b][t] = r.ids[t] or pad
        mask[b][t] = r.ids[t] and 1 or 0
      end
    end
    local scores = teacher:classify(core.tensor(ids, "i32"), {attention_mask = core.tensor(mask, "i32")})
    for b, row in ipairs(scores:totable()) do batch[b].teacher = row end
  end
  return rows
end

-- Pads a list of encoded rows on the right: input_ids, attention_mask (tensors), labels (table),
-- and the rows' teacher logits (a tensor) when they carry them.
-- T: the padded length [the longest row's] (a shard is padded as its whole batch).
local function collate(rows, pad, T)
  T = T or 1
  for _, r in ipairs(rows) do if #r.ids > T then T = #r.ids end end
  local ids, mask, labels = {}, {}, {}
  for b, r in ipairs(rows) do
    local ri, rm = {}, {}
    local n = #r.ids
    for t = 1, T do
      if t <= n then ri[t], rm[t] = r.ids[t], 1 else ri[t], rm[t] = pad, 0 end
    end
    ids[b], mask[b], labels[b] = ri, rm, r.label
  end
  local teacher = nil
  if rows[1].teacher then
    teacher = {}
    for b, r in ipairs(rows) do teacher[b] = r.teacher end
    teacher = core.tensor(teacher, "f32")
  end
  return core.tensor(ids, "i32"), core.tensor(mask, "i32"), labels, teacher
end

local function pad_id(m)
  local p = m.config.pad_token_id
  return (p and p >= 0) and p or 1
end

local function batches_for_epoch(rows, bs, seed, epoch)
  return data.batches(rows, {batch_size = bs, shuffle = true, seed = seed * 1000003 + epoch,
                             length = function(r) return #r.ids end})
end

-- ---------------------------------------------------------------------------------------------
-- Evaluation

--- Accuracy (classify) or mean next-token loss (lm) over encoded rows, in length-sorted batches.
--- opts.distributed: each rank of chai.mpi scores every size-th row and the sums are exchanged
--- (every rank gets the same result).
function M.evaluate(m, rows, opts)
  opts = opts or {}
  local head, bs = opts.head or "classify", opts.batch_size or 64
  local pad = pad_id(m)
  local dist = opts.distributed and mpi.size() > 1
  if dist then rows = mpi.deal(rows) end
  local batches = data.batches(rows, {batch_size = bs, length = function(r) return #r.ids end})
  local correct, count, loss_sum = 0, 0, 0
  for _, batch in ipairs(batches) do
    local ids, mask, labels = collate(batch, pad)
    if head == "classify" then
      local scores = m:classify(ids, {attention_mask = mask}):totable()
      for b, row in ipairs(scores) do
        local best = 1
        for j = 2, #row do if row[j] > row[best] then best = j end end
        if labels[b] ~= nil then
          count = count + 1
          if best - 1 == labels[b] then correct = correct + 1 end
          local mx = row[1]
          for j = 2, #row do if row[j] > mx then mx = row[j] end end
          local z = 0
          for j = 1, #row do z = z + math.exp(row[j] - mx) end
          loss_sum = loss_sum + (mx + math.log(z) - row[labels[b] + 1])
        end
      end
    else
      local logits = m:forward(ids, {attention_mask = mask})
      local tl, ml = ids:totable(), mask:totable()
      local y = {}
      for b = 1, #tl do
        y[b] = {}
        for t = 1, #tl[b] do
          local ok = t < #tl[b] and ml[b][t] == 1 and ml[b][t + 1] == 1
          y[b][t] = ok and tl[b][t + 1] or -100
        end
      end
      local l, _, info = require("chai.loss").cross_entropy(logits, y)
      loss_sum = loss_sum + l * info.count
      count = count + info.count
      logits:free()
    end
  end
  if dist then
    local t = mpi.sum({correct, count, loss_sum})
    correct, count, loss_sum = math.tointeger(t[1]), math.tointeger(t[2]), t[3]
  end
  local res = {count = count, loss = count > 0 and loss_sum / count or 0}
  if head == "classify" then res.accuracy = count > 0 and correct / count or 0 end
  return res
end

-- ---------------------------------------------------------------------------------------------
-- Checkpoints

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function rm_rf(path) os.execute("rm -rf " .. sh_quote(path)) end

local function mkdir_p(path)
  local ok = os.execute("mkdir -p " .. sh_quote(path))
  if not ok then error("chai.train: cannot create folder '" .. path .. "'", 3) end
end

local function write_file(path, text)
  local f, err = io.open(path, "wb")
  if not f then error("chai.train: cannot write '" .. path .. "': " .. tostring(err), 3) end
  f:write(text)
  f:close()
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then error("chai.train: cannot read '" .. path .. "': " .. tostring(err), 3) end
  local s = f:read("a")
  f:close()
  return s
end

local SHAPE_KEYS = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "ffn_dim", "word_embed_proj_dim", "max_position_embeddings", "num_labels",
                    "do_layer_norm_before", "enable_bias", "layer_norm_elementwise_affine",
                    "tie_word_embeddings"}

local function shape_of(m)
  local c, s = m.config, {}
  for _, k in ipairs(SHAPE_KEYS) do s[k] = c[k] end
  return s
end

-- Writes <dir>/last: a new folder is completed first and then renamed over the old one, so an
-- interrupted save leaves the previous checkpoint intact.
local function save_checkpoint(dir, m, opt, state, ema)
  local tmp, last, old = dir .. "/last.tmp", dir .. "/last", dir .. "/last.old"
  rm_rf(tmp)
  m:save(tmp)
  if ema then core.save_safetensors(tmp .. "/ema.safetensors", ema) end
  local st = opt:state()
  core.save_safetensors(tmp .. "/optimizer.safetensors", st.tensors)
  state.optimizer_step = st.step
  state.rng = {core.rng_state()}
  state.model_shape = shape_of(m)
  write_file(tmp .. "/trainer_state.json", json.encode(state))
  rm_rf(old)
  if exists(last .. "/trainer_state.json") then assert(os.rename(last, old)) end
  assert(os.rename(tmp, last))
  rm_rf(old)
end

local function load_checkpoint(dir, m, opt, ema, total)
  local last = dir .. "/last"
  local state = json.decode(read_file(last .. "/trainer_state.json"))
  if math.tointeger(state.total_steps) ~= total then -- refused before anything is touched
    error(string.format("chai.train.run: the checkpoint %s was made for %s steps, this run has %d",
                        last, tostring(state.total_steps), total), 3)
  end
  local want, have = state.model_shape or {}, shape_of(m)
  for _, k in ipairs(SHAPE_KEYS) do
    if want[k] ~= have[k] then
      error(string.format("chai.train: the checkpoint %s is for a model with %s = %s, this model "
                          .. "has %s; refusing to resume", last, k, tostring(want[k]),
                          tostring(have[k])), 3)
    end
  end
  local weights = core.load_safetensors(last .. "/model.safetensors")
  for name, p in pairs(m:params()) do
    local w = weights[name]
    if not w then error("chai.train: the checkpoint " .. last .. " lacks " .. name, 3) end
    local ps, ws = p:shape(), w:shape()
    if #ps ~= #ws or ps[1] ~= ws[1] or ps[2] ~= ws[2] then
      error(string.format("chai.train: %s in the checkpoint has shape (%s), the model's is (%s)",
                          name, table.concat(ws, ","), table.concat(ps, ",")), 3)
    end
    p:copy(w)
  end
  if ema then
    if not exists(last .. "/ema.safetensors") then
      error("chai.train: the checkpoint " .. last .. " has no weight average (ema.safetensors); "
            .. "resume it without ema", 3)
    end
    for name, t in pairs(core.load_safetensors(last .. "/ema.safetensors")) do
      if not ema[name] then error("chai.train: ema.safetensors has an unknown tensor " .. name, 3) end
      ema[name]:copy(t)
    end
  end
  opt:load_state({tensors = core.load_safetensors(last .. "/optimizer.safetensors"),
                  step = math.tointeger(state.optimizer_step)})
  if state.rng then core.rng_set_state(math.tointeger(state.rng[1]), math.tointeger(state.rng[2])) end
  return state
end

-- ---------------------------------------------------------------------------------------------
-- Progress and log

local function fmt_time(s)
  s = math.max(0, math.floor(s + 0.5))
  if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
  return string.format("%d:%02d", s // 60, s % 60)
end

local function progress_line(step, total, loss, lr, ips, eta)
  local width = 24
  local fill = math.floor(width * step / math.max(1, total))
  return string.format("\r%6d/%d [%s%s] loss %.4f lr %.2e %.0f items/s ETA %s  ", step, total,
                       string.rep("=", fill), string.rep(" ", width - fill), loss, lr, ips,
                       fmt_time(eta))
end

-- ---------------------------------------------------------------------------------------------
-- Trained models: $CHAI_MODELS_DIR, else $XDG_CACHE_HOME/chai/models, else ~/.cache/chai/models.

function M.models_dir()
  local function env(k) local v = os.getenv(k); return v ~= "" and v or nil end
  local d = env("CHAI_MODELS_DIR")
  if d then return d end
  local cache = env("XDG_CACHE_HOME") or ((env("HOME") or ".") .. "/.cache")
  return cache .. "/chai/models"
end

--- The folder of a model trained by chai (e.g. "sst2-opt-4x256"), or an error saying how to make
--- it: the offline default models for experiments (see docs/training.md).
function M.cached_model(name)
  local path = M.models_dir() .. "/" .. name
  if not exists(path .. "/config.json") then
    error(string.format("chai.train: no trained model '%s' in %s; make it with "
                        .. "`chai script experiments/train_sst2.lua` (see docs/training.md)",
                        name, M.models_dir()), 2)
  end
  return path
end

-- ---------------------------------------------------------------------------------------------
-- The loop

local RUN_KNOWN = {model = true, head = true, train = true, eval = true, teacher = true, T = true,
                   alpha = true, label_smoothing = true, dropout = true, batch_size = true,
                   epochs = true,
                   max_steps = true, grad_accum = true, seed = true, optimizer = true,
                   eval_every = true, eval_batch_size = true, early_stopping = true,
                   checkpoint = true, save_every = true, resume = true, log = true,
                   progress = true, stop_after = true, time_budget = true, on_step = true,
                   ema = true, restore_best = true, distributed = true, bucket_mb = true}

-- Rows of a batch whose loss counts (the mean's denominator): labelled rows (classify), or each
-- row's real tokens but the last (lm: every real token predicts the next real one).
local function counted(batch, head)
  local n = 0
  for _, r in ipairs(batch) do
    if head == "lm" then
      n = n + math.max(0, #r.ids - 1)
    elseif r.label ~= nil and r.label ~= -100 then
      n = n + 1
    end
  end
  return n
end

-- A fingerprint of the rows (ids and labels), so the ranks can check they train on the same data.
local function fingerprint(rows)
  local h = #rows
  for _, r in ipairs(rows) do
    for _, id in ipairs(r.ids) do h = (h * 31 + id) & 0xffffffffffff end
    h = (h * 31 + (tonumber(r.label) or -1)) & 0xffffffffffff
  end
  return h
end

-- Root's tensors {name = tensor} on every rank: the others make zeros of the announced shapes and
-- receive the values (names in sorted order).
local function broadcast_named(named)
  local manifest
  if mpi.rank() == 1 then
    manifest = {}
    for name, t in pairs(named) do manifest[#manifest + 1] = {name, t:shape(), t:dtype()} end
    table.sort(manifest, function(a, b) return a[1] < b[1] end)
  end
  manifest = mpi.broadcast(manifest, 1)
  local out = {}
  for _, e in ipairs(manifest) do
    local t = mpi.rank() == 1 and named[e[1]] or core.zeros(e[2], e[3])
    mpi.broadcast(t, 1)
    out[e[1]] = t
  end
  return out
end

-- Copies rank 1's values of existing tensors into every rank's (sorted names).
local function broadcast_into(named)
  local names = {}
  for name in pairs(named) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do mpi.broadcast(named[name], 1) end
end

local function better(metric, a, b, min_delta)
  if b == nil then return true end
  if metric == "loss" then return a < b - min_delta end
  return a > b + min_delta
end

function M.run(opts)
  local fname = "chai.train.run"
  check_opts(fname, opts, RUN_KNOWN)
  local m = opts.model
  if type(m) ~= "userdata" then error(fname .. ": model (a chai.Model) is required", 2) end
  local head = opts.head or "classify"
  if head ~= "classify" and head ~= "lm" then
    error(fname .. ": head must be \"classify\" or \"lm\", got " .. tostring(head), 2)
  end
  local rows = opts.train
  if type(rows) ~= "table" or #rows == 0 then error(fname .. ": train rows are required", 2) end
  for i = 1, math.min(#rows, 1) do
    if type(rows[i].ids) ~= "table" then
      error(fname .. ": train rows must be encoded ({ids=, label=}; see chai.train.encode)", 2)
    end
  end
  local bs = opts.batch_size or 32
  local accum = opts.grad_accum or 1
  local seed = opts.seed or 0
  local per_epoch = (#rows + bs - 1) // bs // accum
  if per_epoch < 1 then per_epoch = 1 end
  local dist = opts.distributed and true or false
  if dist and not mpi.available() then
    local launched, n = mpi.launched()
    if launched and n ~= 1 then
      error(fname .. ": distributed = true, but this chai was built without MPI (-DCHAI_MPI=OFF) "
            .. "and a launcher started " .. (n > 0 and n or "several") .. " ranks; rebuild with "
            .. "MPI or run one process", 2)
    end
  end
  local bmb = opts.bucket_mb
  if bmb ~= nil and (type(bmb) ~= "number" or not (bmb > 0)) then
    error(fname .. ": bucket_mb must be a positive number, got " .. tostring(bmb), 2)
  end
  local nranks = dist and mpi.size() or 1
  local rank = dist and mpi.rank() or 1
  local lead = rank == 1 -- writes the checkpoint, the best model, the log and the progress bar
  if nranks > 1 then
    local names = m:trainable()
    mpi.agree({batch_size = bs, grad_accum = accum, seed = seed, head = head,
               steps = opts.max_steps, epochs = opts.epochs, train = fingerprint(rows),
               eval = opts.eval and fingerprint(opts.eval) or false, trainable = names,
               teacher = type(opts.teacher) == "string" and opts.teacher or (opts.teacher ~= nil),
               dropout = opts.dropout or 0, ema = opts.ema or false},
              "the training run (options, data rows or trainable parameters)")
  end
  local total = opts.max_steps or per_epoch * (opts.epochs or 1)
  local oo = {}
  for k, v in pairs(opts.optimizer or {}) do oo[k] = v end
  oo.kind = oo.kind or "adamw"
  oo.schedule = oo.schedule or "linear"
  if oo.schedule ~= "constant" and oo.warmup == nil then oo.warmup = total // 10 end
  if oo.max_grad_norm == nil then oo.max_grad_norm = 1.0 end
  oo.total_steps = total
  local opt = optim.new(oo)
  local eval_every = opts.eval_every or 0
  local save_every = opts.save_every or eval_every
  local es = opts.early_stopping
  local es_metric = es and es.metric or (head == "classify" and "accuracy" or "loss")
  local ckdir = opts.checkpoint
  local tty = opts.progress
  if tty == nil then tty = core.stderr_isatty() end
  tty = tty and lead
  local log = nil
  if opts.log and lead then
    log = io.open(opts.log, "ab")
    if not log then error(fname .. ": cannot open the log '" .. opts.log .. "'", 2) end
  end
  local function write_log(rec)
    if log then
      log:write(json.encode(rec), "\n")
      log:flush()
    end
  end

  local state = {step = 0, epoch = 0, pos = 0, seed = seed, best = nil, bad_evals = 0,
                 total_steps = total, history = {}}
  local params = m:params()
  if opts.restore_best and opts.ema then
    error(fname .. ": restore_best and ema cannot be combined (the average is what is evaluated)", 2)
  end
  local best_copy = nil -- restore_best: name -> tensor at the best evaluation
  local function keep_best()
    if not opts.restore_best then return end
    best_copy = best_copy or {}
    for _, name in ipairs((m:trainable())) do
      if best_copy[name] then best_copy[name]:copy(params[name]) else best_copy[name] = params[name]:clone() end
    end
  end
  local ema = nil
  if opts.ema then
    if type(opts.ema) ~= "number" or opts.ema <= 0 or opts.ema >= 1 then
      error(fname .. ": ema must be a decay in (0, 1), got " .. tostring(opts.ema), 2)
    end
    ema = {}
    for name, p in pairs(params) do ema[name] = p:clone() end
  end
  -- Runs fn with the averaged weights in the model (then puts the trained ones back).
  local function with_average(fn)
    if not ema then return fn() end
    local keep = {}
    for name, p in pairs(params) do
      keep[name] = p:clone()
      p:copy(ema[name])
    end
    local ok, res = pcall(fn)
    for name, p in pairs(params) do p:copy(keep[name]) end
    if not ok then error(res, 0) end
    return res
  end
  if nranks > 1 then -- every rank starts from rank 1's weights
    broadcast_into(params)
    if ema then broadcast_into(ema) end
  end
  if ckdir then
    if lead then mkdir_p(ckdir) end
    local have = lead and opts.resume ~= false and exists(ckdir .. "/last/trainer_state.json")
    if nranks > 1 then have = mpi.broadcast(have, 1) end
    if have then
      -- Rank 1 reads the checkpoint (only its node needs the folder) and hands it to the others;
      -- nothing in it depends on the number of ranks.
      local ok, loaded = true, nil
      if lead then ok, loaded = pcall(load_checkpoint, ckdir, m, opt, ema, total) end
      if nranks > 1 then
        local err = mpi.broadcast(not ok and tostring(loaded) or false, 1)
        if err then ok, loaded = false, err end
      end
      if not ok then error(loaded, 2) end
      if nranks > 1 then
        loaded = mpi.broadcast(lead and loaded or nil, 1)
        broadcast_into(params)
        if ema then broadcast_into(ema) end
        local st = broadcast_named(lead and opt:state().tensors or nil)
        if not lead then
          opt:load_state({tensors = st, step = math.tointeger(loaded.optimizer_step)})
          if loaded.rng then
            core.rng_set_state(math.tointeger(loaded.rng[1]), math.tointeger(loaded.rng[2]))
          end
        end
      end
      state = loaded
      for _, k in ipairs({"step", "epoch", "pos", "bad_evals", "total_steps"}) do
        state[k] = math.tointeger(state[k])
      end
      state.history = state.history or {}
    end
  end
  local pad = pad_id(m)
  local step0 = state.step
  local t0 = core.bench.now()
  -- Seconds spent in earlier segments of a resumed run: the time budget and the reported time
  -- cover the whole run, not only this segment.
  local before = tonumber(state.seconds) or 0
  local items, last_t, last_items, last_draw = 0, t0, 0, -1
  local ips = 0
  local stop_reason = nil
  local last_saved = state.step

  local function evaluate_now()
    if not opts.eval then return nil end
    local r = with_average(function()
      return M.evaluate(m, opts.eval, {head = head, batch_size = opts.eval_batch_size,
                                       distributed = nranks > 1})
    end)
    r.step = state.step
    state.history[#state.history + 1] = r
    write_log({step = state.step, eval = r, time = core.bench.now() - t0})
    local v = r[es_metric]
    if better(es_metric, v, state.best, es and es.min_delta or 0) then
      state.best = v
      state.best_step = state.step
      state.bad_evals = 0
      keep_best()
      if ckdir and lead then with_average(function() m:save(ckdir .. "/best") end) end
    else
      state.bad_evals = state.bad_evals + 1
    end
    if tty then
      io.stderr:write(string.format("\n  eval at step %d: %s\n", state.step,
                                    r.accuracy and string.format("accuracy %.4f loss %.4f", r.accuracy, r.loss)
                                    or string.format("loss %.4f", r.loss)))
    end
    return r
  end

  local function checkpoint_now()
    if ckdir then
      state.seconds = before + core.bench.now() - t0
      if lead then save_checkpoint(ckdir, m, opt, state, ema) end
      last_saved = state.step
      if nranks > 1 then mpi.barrier() end -- the checkpoint is on disk when any rank goes on
    end
  end

  local reducer = nranks > 1 and mpi.reducer{bucket_mb = opts.bucket_mb} or nil
  local last_eval = nil
  while state.step < total and not stop_reason do
    local batches = batches_for_epoch(rows, bs, seed, state.epoch)
    local nb = #batches
    while state.pos + accum <= nb do
      m:zero_grad()
      local loss_sum, count = 0, 0
      for a = 1, accum do
        local batch = batches[state.pos + a]
        -- This rank's rows of the batch, padded as the whole batch: with loss_count (the whole
        -- batch's) and first_row, the ranks' gradients add up to the batch's own.
        local first, n = mpi.shard(#batch, rank, nranks)
        local part, T = batch, nil
        if nranks > 1 then
          part, T = {}, 1
          for k, r in ipairs(batch) do
            if #r.ids > T then T = #r.ids end
            if k >= first and k < first + n then part[#part + 1] = r end
          end
        end
        local sync = a == accum and reducer or nil -- the last batch's gradients are exchanged
        if n > 0 then
          local ids, mask, labels, row_teacher = collate(part, pad, T)
          local teacher = opts.teacher
          if teacher == "rows" then
            teacher = row_teacher
            if not teacher then error(fname .. ": teacher = \"rows\" but the rows carry no teacher logits (see chai.train.annotate)", 2) end
          end
          local loss = m:forward_backward{input_ids = ids, attention_mask = mask,
            labels = head == "classify" and labels or nil, head = head, teacher = teacher,
            T = opts.T, alpha = opts.alpha, label_smoothing = opts.label_smoothing,
            dropout = opts.dropout, dropout_seed = (seed * 1000003 + state.step) * 64 + a,
            first_row = first, loss_count = nranks > 1 and counted(batch, head) or 0, sync = sync}
          loss_sum = loss_sum + loss
        elseif sync then
          m:add_grads(sync) -- no rows here this time: zeros take part in the sum
        end
        count = count + #batch
      end
      if reducer then reducer:finish() end
      local over = opts.time_budget and before + core.bench.now() - t0 >= opts.time_budget
      if nranks > 1 then -- the batch's loss, and one decision to stop for all
        local t = mpi.sum({loss_sum, over and 1 or 0})
        loss_sum, over = t[1], t[2] > 0
      end
      if loss_sum ~= loss_sum or loss_sum == math.huge or loss_sum == -math.huge then
        write_log({step = state.step + 1, epoch = state.epoch, error = "non-finite loss",
                   loss = tostring(loss_sum)})
        if log then log:close() end
        error(string.format("chai.train: the loss is %s at step %d (epoch %d); training stopped. "
                            .. "%s", tostring(loss_sum), state.step + 1, state.epoch,
                            ckdir and string.format("The last good checkpoint is %s/last (step %d), "
                                                    .. "left as it was.", ckdir, last_saved)
                                  or "No checkpoint folder was given."), 2)
      end
      local lr = opt:lr()
      local st = opt:step(params, m:grads(), {scale = 1 / accum})
      state.step = state.step + 1
      if ema then
        core.ema_update(ema, params, math.min(opts.ema, (1 + state.step) / (10 + state.step)))
      end
      state.pos = state.pos + accum
      items = items + count
      local now = core.bench.now()
      if now - last_t >= 2 then -- items/s over the last couple of seconds
        ips = (items - last_items) / (now - last_t)
        last_t, last_items = now, items
      elseif last_items == 0 then
        ips = items / math.max(1e-9, now - t0)
      end
      local loss = loss_sum / accum
      local rec = {step = state.step, epoch = state.epoch, loss = loss, lr = lr,
                   grad_norm = st.grad_norm, items = items, time = now - t0}
      write_log(rec)
      if tty and (now - last_draw >= 0.25 or state.step == total) then
        last_draw = now
        local rate = (state.step - step0) / math.max(1e-9, now - t0)
        io.stderr:write(progress_line(state.step, total, loss, lr, ips, (total - state.step) / rate))
      end
      if opts.on_step then opts.on_step(rec) end
      if eval_every > 0 and state.step % eval_every == 0 and state.step < total then
        last_eval = evaluate_now()
        if es and state.bad_evals >= (es.patience or 3) then stop_reason = "early_stopping" end
      end
      if save_every > 0 and state.step % save_every == 0 and state.step < total then
        checkpoint_now()
      end
      if state.step >= total then break end
      if opts.stop_after and state.step >= opts.stop_after then stop_reason = "stop_after" end
      if over then stop_reason = "time_budget" end
      if stop_reason then break end
    end
    if not stop_reason and state.step < total then
      state.epoch = state.epoch + 1
      state.pos = 0
    end
  end
  if tty then io.stderr:write("\n") end
  if state.step >= total or stop_reason == "early_stopping" or stop_reason == "time_budget" then
    if not (last_eval and last_eval.step == state.step) then last_eval = evaluate_now() end
  end
  local restored = false
  if best_copy and state.best_step ~= state.step then
    for name, t in pairs(best_copy) do params[name]:copy(t) end
    restored = true
  end
  checkpoint_now()
  if ema then -- the model leaves with the averaged weights
    for name, p in pairs(params) do p:copy(ema[name]) end
  end
  if log then log:close() end
  if reducer then reducer:free() end
  return {step = state.step, epoch = state.epoch, total_steps = total, eval = last_eval,
          best = state.best, best_step = state.best_step, history = state.history,
          stopped = stop_reason, seconds = before + core.bench.now() - t0, items = items,
          restored_best = restored or nil}
end

return M
