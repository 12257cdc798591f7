-- Bad calls raise Lua errors that name the bad value, and the process goes on afterwards: wrong
-- types, ragged tables, bad shapes and dtypes, out-of-range positions, unknown options, use after
-- free, bad .npy files, and (with the ops) shape mismatches.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"

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

-- the process goes on: everything still works after all those errors
local ok = chai.tensor({{1, 2}, {3, 4}}, "i32")
ok:set(2, 2, 40)
T.eq(ok:totable(), {{1, 2}, {3, 40}}, "still working after the errors")
T.check(T.passed >= 60, "at least 60 checks ran: " .. T.passed)

T.finish()
