-- Data-parallel training under `mpirun -n 2`: the trainer's distributed = true against one process
-- training alone on the same global batches (rank 1 runs that reference run itself), for the
-- classify and lm heads, gradient accumulation, dropout, EMA, distillation from a teacher model
-- and from annotated rows, ranks with no rows in a step, and checkpoints resumed with the other
-- rank count. Tolerance: the ranks add their shards' gradients where one process adds them in
-- one GEMM, so the gradients agree to float rounding (SGD: parameters within 1e-7 after 8 steps,
-- measured 4e-9). AdamW divides each gradient by its running RMS, which turns the rounding of a
-- gradient that is nearly zero into a visible step: parameters within 1e-5 after 8 steps at
-- lr 1e-3 (measured below 1e-6).
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "../lua/?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"
local mpi = chai.mpi

T.eq(mpi.size(), 2, "run by mpirun -n 2")
local rank = mpi.rank()
local TOL, TOL_SGD = 1e-5, 1e-7

local config = {vocab_size = 50, hidden_size = 16, num_hidden_layers = 2, num_attention_heads = 2,
                ffn_dim = 32, max_position_embeddings = 32, num_labels = 2}
local function model(seed) return chai.opt.create(config, {seed = seed or 1}) end

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
local train_rows, eval_rows = toy(61, 5), toy(20, 6)

-- The largest |a - b| over the parameters of two models (or of a model and saved weights).
local function max_diff(a, b)
  local worst, pb = 0, b.params and b:params() or b
  local function walk(x, y)
    if type(x) == "table" then
      for i = 1, #x do walk(x[i], y[i]) end
    elseif math.abs(x - y) > worst or x ~= x or y ~= y then
      worst = (x ~= x or y ~= y) and math.huge or math.abs(x - y)
    end
  end
  for name, p in pairs(a:params()) do walk(p:totable(), pb[name]:totable()) end
  return worst
end

-- A shared scratch folder (rank 1 makes it, the others learn its name).
local function shared_dir()
  return mpi.broadcast(rank == 1 and T.tmpdir() or nil, 1)
end

local function base_opts(extra)
  local o = {head = "classify", train = train_rows, batch_size = 7, max_steps = 8, seed = 3,
             optimizer = {kind = "adamw", lr = 1e-3, warmup = 2}, progress = false}
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- Trains model(seed) with opts on both ranks (distributed) and on rank 1 alone; returns the
-- distributed model, its result, and (rank 1) the reference model and result.
local function both(extra, seed)
  local md = model(seed)
  local od = base_opts(extra)
  od.model, od.distributed = md, true
  local rd = chai.train.run(od)
  local m1, r1 = nil, nil
  if rank == 1 then
    m1 = model(seed)
    local o1 = base_opts(extra)
    o1.model = m1
    r1 = chai.train.run(o1)
  end
  mpi.barrier()
  return md, rd, m1, r1
end

local function compare(what, extra, seed, tol)
  tol = tol or TOL
  local md, rd, m1, r1 = both(extra, seed)
  -- every rank holds the same parameters: rank 2's reach rank 1 through a broadcast
  local other, names = {}, {}
  for name, p in pairs(md:params()) do other[name], names[#names + 1] = p:clone(), name end
  table.sort(names) -- the same order on both ranks
  for _, name in ipairs(names) do mpi.broadcast(other[name], 2) end
  T.eq(max_diff(md, other), 0, what .. ": ranks hold identical parameters")
  if rank == 1 then
    local d = max_diff(md, m1)
    T.check(d <= tol, string.format("%s: 2 ranks vs 1 process, max |dparam| %.3g <= %g", what, d, tol))
    T.check(math.abs(rd.eval and (rd.eval.loss - r1.eval.loss) or 0) <= 1e-5, what .. ": eval loss")
    if rd.eval then T.eq(rd.eval.accuracy, r1.eval.accuracy, what .. ": eval accuracy") end
    T.eq(rd.items, r1.items, what .. ": items")
    io.stderr:write(string.format("%-28s max |dparam| %.3g\n", what, d))
  end
  return md, rd
end

compare("classify, sgd", {optimizer = {kind = "sgd", lr = 1e-2, momentum = 0.9}}, 1, TOL_SGD)
compare("classify", {eval = eval_rows, eval_every = 4})
compare("classify, accumulation 2", {grad_accum = 2, batch_size = 5})
compare("classify, dropout + ema", {dropout = 0.2, ema = 0.9})
compare("lm", {head = "lm"})
compare("lm, dropout", {head = "lm", dropout = 0.1, batch_size = 3})
-- batch_size 1: rank 2 has no rows in any step and takes part with zero gradients
compare("one row a batch", {batch_size = 1, max_steps = 4})
do -- distillation from a teacher model (each rank runs it on its own rows only)
  local teacher = model(9)
  compare("kd, teacher model", {teacher = teacher, T = 2, alpha = 0.5})
end
do -- distillation from annotated rows: each rank annotates half of them, then they swap
  local teacher = model(9)
  local rows = {}
  for i, r in ipairs(train_rows) do rows[i] = {ids = r.ids, label = r.label} end
  chai.train.annotate(rows, teacher, {distributed = true, batch_size = 8})
  local ref = {}
  for i, r in ipairs(train_rows) do ref[i] = {ids = r.ids, label = r.label} end
  chai.train.annotate(ref, teacher, {batch_size = 8})
  local worst = 0
  for i = 1, #rows do
    for j = 1, 2 do worst = math.max(worst, math.abs(rows[i].teacher[j] - ref[i].teacher[j])) end
  end
  T.check(worst <= 1e-5, "distributed annotate: every rank has every row's logits " .. worst)
  compare("kd, teacher rows", {train = rows, teacher = "rows", T = 2, alpha = 0.7})
end

-- ---- checkpoints: written by rank 1 only, resumed with the other rank count ----
do
  local ref = nil
  if rank == 1 then -- one process, start to end
    ref = model()
    chai.train.run(base_opts({model = ref}))
  end
  -- 2 ranks stop after 3 steps; rank 1 alone resumes to the end
  local ck = shared_dir()
  local m = model(7) -- other weights: rank 1's start (and the checkpoint) must win
  if rank == 1 then
    local mm = model()
    for name, p in pairs(m:params()) do p:copy(mm:params()[name]) end
  end
  local log = ck .. "/log.jsonl"
  chai.train.run(base_opts({model = m, distributed = true, checkpoint = ck, stop_after = 3,
                            save_every = 100, log = log}))
  if rank == 1 then
    local f = io.open(log)
    local n = 0
    for _ in f:lines() do n = n + 1 end
    f:close()
    T.eq(n, 3, "the log has rank 1's records only")
    local st = require("chai.core").json.decode(T.read_bytes(ck .. "/last/trainer_state.json"))
    T.eq(math.tointeger(st.step), 3, "checkpoint at step 3")
    local m1 = model(11)
    local res = chai.train.run(base_opts({model = m1, checkpoint = ck}))
    T.eq(res.step, 8, "resumed by one process to the end")
    local d = max_diff(m1, ref)
    T.check(d <= TOL, string.format("2 ranks → 1 process resume: max |dparam| %.3g", d))
  end
  mpi.barrier()
  -- one process stops after 3 steps; both ranks resume
  local ck2 = shared_dir()
  if rank == 1 then chai.train.run(base_opts({model = model(), checkpoint = ck2, stop_after = 3})) end
  mpi.barrier()
  local m2 = model(13)
  local res = chai.train.run(base_opts({model = m2, distributed = true, checkpoint = ck2}))
  T.eq(res.step, 8, "resumed by 2 ranks to the end")
  if rank == 1 then
    local d = max_diff(m2, ref)
    T.check(d <= TOL, string.format("1 process → 2 ranks resume: max |dparam| %.3g", d))
  end
end

-- ---- ranks that disagree are refused on every rank ----
T.raises(function()
  chai.train.run(base_opts({model = model(), distributed = true, seed = rank}))
end, {"the ranks disagree on the training run"}, "different seeds")
T.raises(function()
  local rows = rank == 1 and train_rows or toy(61, 99)
  chai.train.run(base_opts({model = model(), distributed = true, train = rows}))
end, {"the ranks disagree"}, "different data")

T.finish()
