-- chai.mpi under `mpirun -n 2`: rank and size, allreduce (sum, mean; f32, i32, i64; a fixed
-- order that gives every rank the same bits), broadcast of tensors and of JSON values, gather,
-- sum, deal and shard, the gradient reducer over several buckets, and the errors that every rank
-- raises alike when the ranks call a collective differently.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "../lua/?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"
local mpi = chai.mpi

T.check(mpi.available(), "built with MPI")
T.check(mpi.initialized(), "started by the launcher")
T.eq({mpi.launched()}, {true, 2}, "launched by mpirun -n 2")
T.eq(mpi.size(), 2, "size")
local r = mpi.rank()
T.check(r == 1 or r == 2, "1-based rank")

-- allreduce
local t = chai.tensor({r, 10 * r, -r, 0.5}, "f32")
T.eq(mpi.allreduce(t, "sum"):totable(), {3, 30, -3, 1}, "sum f32")
T.eq(mpi.allreduce(chai.tensor({r, 3}, "f32"), "mean"):totable(), {1.5, 3}, "mean f32")
T.eq(mpi.allreduce(chai.tensor({r, 2 ^ 40}, "i64")):totable(), {3, 2 ^ 41}, "sum i64 (default op)")
T.eq(mpi.allreduce(chai.tensor({{r}, {-r}}, "i32")):totable(), {{3}, {-3}}, "sum i32, 2-d")
do -- large enough for several chunks, values whose float sum depends on the order
  local n = 10007
  local x = chai.randn({n}, {seed = 40 + r})
  local want = chai.randn({n}, {seed = 41}) + chai.randn({n}, {seed = 42}) -- rank order
  mpi.allreduce(x)
  local xs, ws, worst = x:totable(), want:totable(), 0
  for i = 1, n do worst = math.max(worst, math.abs(xs[i] - ws[i])) end
  T.eq(worst, 0, "sum in rank order, bit for bit")
  local other = x:clone()
  mpi.broadcast(other, 2)
  T.eq(other:totable(), xs, "every rank holds the same bits")
end
T.raises(function() mpi.allreduce(chai.zeros({r})) end, {"disagree on the element count",
  "rank 1: 1, rank 2: 2"}, "sizes differ")
T.raises(function() mpi.allreduce(chai.zeros({2}, r == 1 and "f32" or "i32")) end,
  "disagree on the dtype", "dtypes differ")
T.raises(function() mpi.allreduce(chai.zeros({2}, "i32"), "mean") end, "\"mean\" needs an f32 tensor")
T.raises(function() mpi.allreduce(chai.zeros({2}, "f16")) end, "dtype f16 is not supported")
T.raises(function() mpi.allreduce(chai.zeros({2}), "max") end, "unknown op 'max'")
T.raises(function() mpi.allreduce(chai.zeros({2, 2}):transpose(1, 2)) end, "must be contiguous")

-- broadcast
local b = chai.tensor({r, r}, "f32")
T.eq(mpi.broadcast(b, 2):totable(), {2, 2}, "broadcast from rank 2")
T.eq(mpi.broadcast({from = r, list = {1, 2}}, 1), {from = 1, list = {1, 2}}, "broadcast a value")
T.eq(mpi.broadcast(r == 2 and "two" or nil, 2), "two", "broadcast a string from rank 2")
T.eq(mpi.broadcast(nil, 1), nil, "broadcast nil")
T.raises(function() mpi.broadcast(chai.zeros({2}), 3) end, "root rank 3 is outside 1..2")
T.raises(function() mpi.broadcast(chai.zeros({2}), r) end, "disagree on the root")

-- gather
local g = mpi.gather({rank = r, word = ("x"):rep(r)}, 2)
if r == 2 then
  T.eq(g, {{rank = 1, word = "x"}, {rank = 2, word = "xx"}}, "gather to rank 2")
else
  T.eq(g, nil, "gather: nil off the root")
end
T.eq(mpi.gather(r, 1), r == 1 and {1, 2} or nil, "gather numbers to rank 1")
T.raises(function() mpi.gather(function() end, 1) end, "not JSON-able")
T.raises(function() mpi.gather(1, 0) end, "root rank 0 is outside 1..2")

-- sum, deal, shard, agree, barrier
T.eq(mpi.sum({r, 0.25, -r}), {3, 0.5, -3}, "sum of numbers")
T.raises(function() mpi.sum({}) end, "expects 1..4096 numbers")
local items, at = mpi.deal({"a", "b", "c", "d", "e"})
T.eq(items, r == 1 and {"a", "c", "e"} or {"b", "d"}, "deal")
T.eq(at, r == 1 and {1, 3, 5} or {2, 4}, "deal positions")
T.eq({mpi.shard(7)}, r == 1 and {1, 4} or {5, 3}, "shard 7 rows")
T.eq({mpi.shard(1)}, r == 1 and {1, 1} or {2, 0}, "shard 1 row")
mpi.agree({a = 1, b = {2, 3}}, "a table")
T.raises(function() mpi.agree({a = r}, "the settings") end,
  {"disagree on the settings", "rank 2 differs from rank 1"})
mpi.barrier()

-- the reducer: several buckets (4 KiB = 1024 floats), odd sizes, a partial last bucket
do
  local red = mpi.reducer{bucket_mb = 4096 / 2 ^ 20}
  local ts, sizes = {}, {1, 1023, 1024, 5000, 3, 2049}
  for k, n in ipairs(sizes) do
    local x = {}
    for i = 1, n do x[i] = r * i + k end
    ts[k] = chai.tensor(x, "f32")
    red:add(ts[k])
  end
  red:finish()
  local ok = true
  for k, n in ipairs(sizes) do
    local x = ts[k]:totable()
    for i = 1, n do if x[i] ~= 3 * i + 2 * k then ok = false end end
  end
  T.check(ok, "reducer sums every buffer")
  local st = red:stats()
  T.eq(st.floats, 9100, "floats added")
  T.eq(st.buckets, 9, "9 buckets of 1024 floats")
  T.check(st.sent_bytes > 0, "bytes sent")
  -- a second round with the same reducer, then ranks that add different amounts
  local y = chai.tensor({r}, "f32")
  red:add(y)
  red:finish()
  T.eq(y:totable(), {3}, "second round")
  red:add(chai.zeros({r}))
  T.raises(function() red:finish() end, "disagree on the number of values summed")
  T.raises(function() red:add(chai.zeros({2}, "i32")) end, "needs a contiguous f32 tensor")
  red:free()
  T.raises(function() red:add(y) end, "used after free")
end
T.raises(function() mpi.reducer{bucket_mb = -1} end, "bucket_mb must be a positive number")
T.raises(function() mpi.reducer{size = 1} end, "unknown option 'size'")

T.finish()
