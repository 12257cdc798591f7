-- chai.mpi in one process (no launcher): the group of one that every build has (with MPI or
-- -DCHAI_MPI=OFF), the shard arithmetic of data-parallel training in one process (two shards with
-- first_row and loss_count give the whole batch's gradients, dropout included), and the trainer's
-- distributed = true with one rank, which must equal a plain run bit for bit. The 2-rank tests are
-- tests/mpi/ (run by mpirun).
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"
local mpi = chai.mpi

local with_mpi = os.getenv("CHAI_MPI") == "1"
T.eq(mpi.available(), with_mpi, "available() says how chai was built")
T.eq({mpi.launched()}, {false, 0}, "not launched")
T.eq(mpi.initialized(), false, "MPI not started outside a launcher")
T.eq({mpi.rank(), mpi.size()}, {1, 1}, "a group of one")

-- collectives of a group of one return their input, with the same argument checks
local t = chai.tensor({1.5, -2}, "f32")
T.eq(mpi.allreduce(t, "sum"):totable(), {1.5, -2}, "allreduce sum")
T.eq(mpi.allreduce(t, "mean"):totable(), {1.5, -2}, "allreduce mean")
T.raises(function() mpi.allreduce(t, "prod") end, "unknown op 'prod' (known: sum, mean)")
T.raises(function() mpi.allreduce(chai.zeros({2}, "bf16")) end, "dtype bf16 is not supported")
T.raises(function() mpi.allreduce(chai.zeros({2}, "i64"), "mean") end, "\"mean\" needs an f32")
T.raises(function() mpi.allreduce({1, 2}) end, "chai.Tensor")
T.eq(mpi.broadcast(t, 1):totable(), {1.5, -2}, "broadcast a tensor")
T.raises(function() mpi.broadcast(t, 2) end, "root rank 2 is outside 1..1")
T.eq(mpi.broadcast({a = {1, 2}}), {a = {1, 2}}, "broadcast a value")
T.eq(mpi.gather({x = 1}), {{x = 1}}, "gather")
T.eq(mpi.gather("s", 1), {"s"}, "gather a string")
T.raises(function() mpi.gather({f = print}) end, "not JSON-able")
T.eq(mpi.sum({1, 2.5}), {1, 2.5}, "sum")
T.eq({mpi.deal({"a", "b"})}, {{"a", "b"}, {1, 2}}, "deal: everything")
T.eq({mpi.shard(5)}, {1, 5}, "shard: every row")
T.eq({mpi.shard(5, 2, 3)}, {3, 2}, "shard 5 rows, rank 2 of 3")
T.eq({mpi.shard(2, 3, 3)}, {3, 0}, "shard 2 rows, rank 3 of 3: none")
mpi.agree({1, {2}}, "anything")
mpi.barrier()
do
  local red = mpi.reducer()
  local x = chai.tensor({1, 2}, "f32")
  red:add(x)
  red:finish()
  T.eq(x:totable(), {1, 2}, "reducer of one rank keeps the values")
  T.eq(red:stats().floats, 2, "reducer counts")
  red:free()
end

if with_mpi then
  mpi.init() -- a singleton MPI (no launcher): a group of one that is initialized
  T.check(mpi.initialized(), "init() starts MPI")
  T.eq({mpi.rank(), mpi.size()}, {1, 1}, "singleton group")
  mpi.init() -- a second call is fine
  T.eq(mpi.allreduce(chai.tensor({3}, "f32")):totable(), {3}, "allreduce on a singleton")
else
  T.raises(function() mpi.init() end, {"built without MPI", "-DCHAI_MPI=ON"}, "init without MPI")
end

-- ---- shards of a batch in one process ----
local config = {vocab_size = 50, hidden_size = 16, num_hidden_layers = 2, num_attention_heads = 2,
                ffn_dim = 32, max_position_embeddings = 32, num_labels = 2}
local ids = {{2, 5, 6, 7, 8}, {2, 9, 10, 1, 1}, {2, 11, 12, 13, 1}, {2, 3, 4, 1, 1},
             {2, 8, 8, 8, 8}}
local mask = {{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}, {1, 1, 1, 1, 0}, {1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}}
local labels = {1, 0, 1, 0, 1}
local function rows(t, i, j) return table.move(t, i, j, 1, {}) end
local function max_diff(ga, gb)
  local worst = 0
  local function walk(x, y)
    if type(x) == "table" then
      for i = 1, #x do walk(x[i], y[i]) end
    else
      worst = math.max(worst, math.abs(x - y))
    end
  end
  for name, g in pairs(ga) do walk(g:totable(), gb[name]:totable()) end
  return worst
end
for _, head in ipairs({"classify", "lm"}) do
  for _, p in ipairs({0, 0.2}) do
    local what = head .. (p > 0 and ", dropout" or "")
    local a = chai.opt.create(config, {seed = 1})
    local la, ia = a:forward_backward{input_ids = ids, attention_mask = mask, head = head,
      labels = head == "classify" and labels or nil, dropout = p, dropout_seed = 9}
    local b = chai.opt.create(config, {seed = 1})
    local loss = 0
    for _, s in ipairs({{1, 2}, {3, 5}}) do
      loss = loss + b:forward_backward{input_ids = rows(ids, s[1], s[2]),
        attention_mask = rows(mask, s[1], s[2]), head = head,
        labels = head == "classify" and rows(labels, s[1], s[2]) or nil, dropout = p,
        dropout_seed = 9, first_row = s[1], loss_count = ia.count}
    end
    T.close(loss, la, 1e-6, what .. ": the shards' losses add up to the batch's")
    local d = max_diff(a:grads(), b:grads())
    T.check(d <= 1e-6, what .. ": the shards' gradients add up to the batch's: " .. d)
  end
end
do -- the shards' own dropout draws differ from the whole batch's (first_row matters)
  local a = chai.opt.create(config, {seed = 1})
  a:forward_backward{input_ids = ids, attention_mask = mask, labels = labels, head = "classify",
                     dropout = 0.3, dropout_seed = 9}
  local b = chai.opt.create(config, {seed = 1})
  for _, s in ipairs({{1, 2}, {3, 5}}) do
    b:forward_backward{input_ids = rows(ids, s[1], s[2]), attention_mask = rows(mask, s[1], s[2]),
                       labels = rows(labels, s[1], s[2]), head = "classify", dropout = 0.3,
                       dropout_seed = 9, loss_count = 5}
  end
  T.check(max_diff(a:grads(), b:grads()) > 1e-4, "without first_row the masks differ")
end
do
  local m = chai.opt.create(config, {seed = 1})
  local fb = function(o)
    o.input_ids, o.labels, o.head = ids, labels, "classify"
    return m:forward_backward(o)
  end
  T.raises(function() fb{first_row = 0} end, "first_row 0 is not a row number >= 1")
  T.raises(function() fb{loss_count = -1} end, "loss_count -1 must be >= 0")
  T.raises(function() fb{sync = {}} end, "chai.mpi.Reducer")
  -- add_grads: gradient memory for every trainable parameter, zeros, handed to a reducer
  local fresh = chai.opt.create(config, {seed = 1})
  fresh:freeze{layers = {1}}
  local red = mpi.reducer()
  fresh:add_grads(red)
  red:finish()
  local names, n = fresh:trainable()
  local count, values = 0, 0
  for _, g in pairs(fresh:grads()) do
    count = count + 1
    values = values + g:numel()
    T.eq(g:sum(), 0, "zero gradients")
  end
  T.eq(count, #names, "every trainable parameter has a gradient")
  T.eq(red:stats().floats, n, "all of them went to the reducer")
end

-- ---- the trainer: distributed = true with one rank is the plain run ----
local function toy(n, seed)
  local rng, out = chai.data.rng(seed), {}
  for i = 1, n do
    local r, lab = {2}, 0
    for j = 2, 3 + rng(8) do
      r[j] = 3 + rng(45)
      if r[j] == 7 then lab = 1 end
    end
    out[i] = {ids = r, label = lab}
  end
  return out
end
local train_rows = toy(40, 5)
local function run(distributed)
  local m = chai.opt.create(config, {seed = 1})
  local res = chai.train.run{model = m, train = train_rows, eval = toy(10, 6), batch_size = 6,
                             max_steps = 5, seed = 2, dropout = 0.1, grad_accum = 2,
                             progress = false, distributed = distributed}
  return m, res
end
local m1, r1 = run(false)
local m2, r2 = run(true)
T.eq(max_diff(m1:params(), m2:params()), 0, "distributed = true alone: the same bits")
T.eq(r1.eval, r2.eval, "and the same evaluation")
T.raises(function() chai.train.run{model = m1, train = train_rows, bucket_mb = 0,
                                   distributed = true, max_steps = 1, progress = false} end,
         "bucket_mb must be a positive number")

T.finish()
