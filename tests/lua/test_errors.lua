-- Bad calls raise Lua errors that name the bad value, and the process goes on afterwards: wrong
-- types, ragged tables, bad shapes and dtypes, out-of-range positions, unknown options, use after
-- free, bad .npy files, and (with the ops) shape mismatches.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"
local testing = require("chai.core").testing

local t = chai.tensor({{1, 2, 3}, {4, 5, 6}}) -- (2,3)
local function R(needles, fn, what) T.raises(fn, needles, what) end

-- constructors
R({"ragged", "dim 2", "[2]"}, function() chai.tensor({{1, 2}, {3}}) end)
R({"ragged", "dim 3"}, function() chai.tensor({{{1}, {2}}, {{3}, {4, 5}}}) end)
R({"element [2][2]", "'x'"}, function() chai.tensor({{1, 2}, {3, "x"}}) end)
R({"element [3]", "boolean"}, function() chai.tensor({1, 2, true}) end)
R("unknown dtype 'f99'", function() chai.tensor({1, 2}, "f99") end)
R("got string", function() chai.tensor("abc") end)
R("more than 4 levels", function() chai.tensor({{{{{1}}}}}) end)
R({"300", "u8"}, function() chai.tensor({300}, "u8") end)
R({"-129", "i8"}, function() chai.full({2}, -129, "i8") end)
R({"10000000000", "i32"}, function() chai.full({2}, 1e10, "i32") end)
R({"nan", "i64"}, function() chai.tensor({0 / 0}, "i64") end)
R({"shape entry 2", "-3"}, function() chai.zeros({2, -3}) end)
R({"shape entry 2", "2.5"}, function() chai.zeros({2, 2.5}) end)
R({"5 dims", "at most 4"}, function() chai.zeros({1, 1, 1, 1, 1}) end)
R({"chai.ones", "string"}, function() chai.ones("x") end)
R({"unknown option 'sed'", "seed"}, function() chai.randn({2}, {sed = 1}) end)
R({"seed", "-1"}, function() chai.randn({2}, {seed = -1}) end)
R({"option std", "string"}, function() chai.randn({2}, {std = "big"}) end)
R({"high", "low"}, function() chai.rand({2}, {low = 1, high = 0}) end)
R({"options must be a table", "number"}, function() chai.randn({2}, 5) end)
R({"chai.arange", "-1"}, function() chai.arange(-1) end)
R("unknown dtype 'f128'", function() chai.arange(3, "f128") end)
R({"300", "u8"}, function() chai.arange(301, "u8") end)

-- positions and shapes
R({"index 3", "dim 1", "size 2"}, function() t:get(3, 1) end)
R({"index 0", "1-based"}, function() t:get(1, 0) end)
R({"expected 2 indices", "got 1"}, function() t:get(1) end)
R({"index 0", "t[i]"}, function() return t[0] end)
R({"index 5", "size 2"}, function() return t[5] end)
R({"index -3"}, function() return t[-3] end)
R({"t:set", "'x'"}, function() t:set(1, 1, "x") end)
R({"dim 3", "2-dim"}, function() t:transpose(1, 3) end)
R({"dim 0"}, function() t:transpose(0, 1) end)
R({"dim 1 appears twice"}, function() t:permute{1, 1} end)
R({"got 1 dims", "2-dim"}, function() t:permute{1} end)
R({"start 0", "dim 1"}, function() t:slice(1, 0, 1) end)
R({"stop 5", "size 3"}, function() t:slice(2, 2, 5) end)
R({"step must be >= 1, got 0"}, function() t:slice(1, 1, 2, 0) end)
R({"cannot reshape 6 elements", "(4,4)"}, function() t:view(4, 4) end)
R({"non-contiguous", "(6)"}, function() t:transpose(1, 2):view(6) end)
R("only one dim may be -1", function() t:view(-1, -1) end)
R({"shape entry 1", "-2"}, function() t:reshape(-2, 3) end)
R("unknown dtype 'f128'", function() t:to("f128") end)
R({"6 elements", "exactly 1"}, function() t:item() end)
R("0-d tensor has no length", function() return #chai.tensor(1) end)
R("0-d tensor cannot be indexed", function() return chai.tensor(1)[1] end)
R({"no field 'foo'"}, function() t.foo = 1 end)
R({"chai.Tensor expected", "number"}, function() t.shape(5) end)
R({"shapes differ", "(2)", "(3)"}, function() chai.zeros({2}):copy(chai.zeros({3})) end)
R({"element [2]", "string"}, function() chai.zeros({2}):copy({1, "y"}) end)

-- use after free
local dead = chai.zeros({2, 2})
local alive_view = dead:view(4)
dead:free()
R("tensor used after free", function() dead:shape() end)
R("tensor used after free", function() return dead[1] end)
R("tensor used after free", function() dead:save_npy(os.tmpname()) end)
R("tensor used after free", function() return #dead end)
R("tensor used after free", function() chai.tensor(dead) end)
T.eq(alive_view:numel(), 4, "a view of a freed tensor is still alive")

-- system functions
R({"1..1024", "0"}, function() chai.threads(0) end)
R({"seed", "-5"}, function() chai.seed(-5) end)
R({"number expected", "string"}, function() chai.seed("x") end)

-- bad npy files
local tmp = T.tmpdir()
R({"/nonexistent/x.npy", "cannot open"}, function() chai.load_npy("/nonexistent/x.npy") end)
T.write_bytes(tmp .. "/zip.npy", "PK\3\4 not numpy")
R({"zip.npy", "bad magic", "50 4b 03 04"}, function() chai.load_npy(tmp .. "/zip.npy") end)
T.write_bytes(tmp .. "/short.npy", "\x93NUMPY\x01\x00\x40\x00{'descr': '<f4', 'fortran_order': False, 'shape': (9,), }")
R({"short.npy", "header length 64"}, function() chai.load_npy(tmp .. "/short.npy") end)
R({"bf16", "no NumPy equivalent"}, function() t:to("bf16"):save_npy(tmp .. "/x.npy") end)

-- ops
R({"matmul", "(2,3)", "(2,3)", "inner dims 3 and 2"}, function() chai.matmul(t, t) end)
R({"add", "(2,3)", "(2)", "do not broadcast"}, function() return t + chai.zeros({2}) end)
R({"mul", "(4)"}, function() return t * {1, 2, 3, 4} end)
R("at least one tensor", function() chai.add(1, 2) end)
R({"softmax", "dim 3", "2-dim"}, function() t:softmax(3) end)
R({"sum", "dim -3"}, function() t:sum(-3) end)
R({"relu", "i32"}, function() chai.relu(chai.zeros({2}, "i32")) end)
R({"layernorm", "weight (2)", "(2,3)"}, function() chai.layernorm(t, chai.ones({2}), nil) end)
R({"linear", "(2,3)"}, function() chai.linear(t, chai.zeros({4, 2})) end)
R({"embedding", "7"}, function() chai.embedding({0, 7}, chai.zeros({3, 2})) end)
R({"embedding", "f32"}, function() chai.embedding(chai.zeros({2}), chai.zeros({3, 2})) end)
R({"cross_entropy", "9"}, function() chai.cross_entropy(t, {0, 9}) end)
R({"cross_entropy", "(3)", "(2,3)"}, function() chai.cross_entropy(t, {0, 1, 2}) end)
R({"unknown option 'ignore_idx'", "ignore_index"}, function() chai.cross_entropy(t, {0, 1}, {ignore_idx = 1}) end)
R({"option ignore_index", "1.5"}, function() chai.cross_entropy(t, {0, 1}, {ignore_index = 1.5}) end)
local q = chai.zeros({1, 2, 1, 4})
R({"unknown option 'casual'"}, function() chai.attention(q, q, q, {casual = true}) end)
R({"option causal", "number"}, function() chai.attention(q, q, q, {causal = 1}) end)
R({"attention", "(1,2,1,4)", "(2,4)"}, function() chai.attention(q, q, chai.zeros({2, 4})) end)
R({"key_mask", "(1,3)"}, function() chai.attention(q, q, q, {mask = {{1, 1, 1}}}) end)
R({"attention: mask", "ragged", "dim 2"}, function() chai.attention(q, q, q, {mask = {{1, 1}, {1}}}) end)
R({"attention: mask", "string"}, function() chai.attention(q, q, q, {mask = "all"}) end)
R({"option dtype", "table"}, function() chai.randn({2}, {dtype = {}}) end)
R({"argument #2", "ragged"}, function() chai.matmul(t, {{1}, {2, 3}}) end)
R("tensor used after free", function() return dead + 1 end)
R("tensor used after free", function() chai.matmul(alive_view, dead) end)

-- allocation failures: the error is raised, and nothing leaks, wherever the failure strikes
do
  collectgarbage()
  collectgarbage()
  local live0 = chai.memory().live
  testing.fail_alloc_after(1)
  R({"out of memory", "injected"}, function() chai.zeros({10}) end)
  testing.fail_alloc_after(0)
  local calls = {
    function() return chai.randn({10}, {seed = 1, dtype = "f16"}) end,
    function() return chai.matmul({{1, 2}}, {{1}, {2}}) end,
    function() return chai.tensor({1, 2}) + {3, 4} end,
    function() return chai.arange(6):view(2, 3):transpose(1, 2):reshape(6) end,
    function() return chai.attention(chai.ones({1, 2, 1, 2}), chai.ones({1, 2, 1, 2}),
      chai.ones({1, 2, 1, 2}), {mask = {{1, 0}}}) end,
  }
  for i, fn in ipairs(calls) do
    local failures = 0
    for n = 1, 12 do
      testing.fail_alloc_after(n)
      local ok, err = pcall(fn)
      testing.fail_alloc_after(0)
      if not ok then
        failures = failures + 1
        T.check(tostring(err):find("injected", 1, true), "call " .. i .. " fails cleanly: " .. tostring(err))
      end
    end
    T.check(failures > 0, "call " .. i .. " met an injected failure")
  end
  collectgarbage()
  collectgarbage()
  T.eq(chai.memory().live, live0, "no chai memory is left after the failed calls")
end

-- the process goes on: everything still works after all those errors
local ok = chai.tensor({{1, 2}, {3, 4}}, "i32")
ok:set(2, 2, 40)
T.eq(ok:totable(), {{1, 2}, {3, 40}}, "still working after the errors")
T.check(T.passed >= 80, "at least 80 checks ran: " .. T.passed)

T.finish()
