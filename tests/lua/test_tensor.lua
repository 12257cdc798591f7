-- chai.Tensor: constructors, inspection, dtype conversions, views sharing storage, element
-- access, metamethods, tostring, release, memory accounting and the system functions.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"

-- constructors and inspection
do
  local t = chai.tensor({{1, 2, 3}, {4, 5, 6}})
  T.eq(t:shape(), {2, 3}, "shape")
  T.eq(t:dtype(), "f32", "default dtype")
  T.eq(t:ndim(), 2, "ndim")
  T.eq(t:numel(), 6, "numel")
  T.eq(t:nbytes(), 24, "nbytes")
  T.eq(t:totable(), {{1, 2, 3}, {4, 5, 6}}, "totable")
  T.check(t:is_contiguous(), "new tensors are contiguous")
  T.check(chai.is_tensor(t) and not chai.is_tensor({}), "is_tensor")
  T.eq(chai.tensor(2.5):shape(), {}, "a number gives a 0-d tensor")
  T.eq(chai.tensor(2.5):item(), 2.5, "0-d item")
  T.eq(chai.tensor({}):shape(), {0}, "empty table")
  T.eq(chai.tensor({{}, {}}):shape(), {2, 0}, "empty rows")
  T.eq(chai.tensor({1, 2}, "i64"):dtype(), "i64", "dtype argument")
  T.eq(chai.tensor({1, 2}, "int32"):dtype(), "i32", "dtype alias")
  T.eq(chai.zeros({2, 2}):totable(), {{0, 0}, {0, 0}}, "zeros")
  T.eq(chai.zeros(3, "i32"):totable(), {0, 0, 0}, "zeros with an integer size")
  T.eq(chai.ones({3}, "u8"):totable(), {1, 1, 1}, "ones u8")
  T.eq(chai.full({2}, 7.5):totable(), {7.5, 7.5}, "full")
  T.eq(chai.full({2}, -3, "i8"):totable(), {-3, -3}, "full i8")
  T.eq(chai.arange(4):totable(), {0, 1, 2, 3}, "arange values start at 0")
  T.eq(chai.arange(3, "i64"):dtype(), "i64", "arange dtype")
  T.eq(chai.arange(0):shape(), {0}, "arange(0)")
  local big = chai.tensor({9007199254740993}, "i64")
  T.eq(big[1], 9007199254740993, "i64 elements are exact beyond 2^53")
  T.check(math.type(chai.tensor({3}, "i32")[1]) == "integer", "integer dtypes read as integers")
  local c = chai.tensor(chai.tensor({1.5, 2.5}), "i32")
  T.eq(c:totable(), {1, 2}, "chai.tensor(tensor, dtype) converts")
end

-- random numbers: seeded, reproducible, and the global generator
do
  local a = chai.randn({3, 4}, {seed = 7})
  local b = chai.randn({3, 4}, {seed = 7})
  T.eq(a:totable(), b:totable(), "same seed, same draws")
  T.check(not T.deep_eq(a:totable(), chai.randn({3, 4}, {seed = 8}):totable()), "other seed")
  chai.seed(42)
  local g1 = chai.randn({5}):totable()
  local g2 = chai.randn({5}):totable()
  chai.seed(42)
  T.eq(chai.randn({5}):totable(), g1, "chai.seed reseeds the global generator")
  T.check(not T.deep_eq(g1, g2), "the global generator advances")
  local m = chai.randn({20000}, {seed = 1, mean = 3, std = 0.5})
  T.close(m:sum() / 20000, 3, 0.02, "randn mean")
  T.close(math.sqrt(((m - 3) * (m - 3)):sum() / 20000), 0.5, 0.02, "randn std")
  local u = chai.rand({1000}, {seed = 3})
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(u:totable()) do lo, hi = math.min(lo, v), math.max(hi, v) end
  T.check(lo >= 0 and hi < 1 and hi > 0.9 and lo < 0.1, "rand in [0, 1)")
  local r = chai.rand({100}, {seed = 3, low = -2, high = -1})
  T.check(r:totable()[1] >= -2 and r:totable()[1] < -1, "rand low/high")
  T.eq(chai.randn({2}, {seed = 1, dtype = "f16"}):dtype(), "f16", "randn dtype option")
end

-- dtype conversions
do
  local t = chai.tensor({1.0, -2.5, 3.14159, 65504, 1e-8})
  local h = t:to("f16")
  T.eq(h:dtype(), "f16", "to f16")
  T.close(h:totable(), {1.0, -2.5, 3.140625, 65504, 0}, 1e-9, "f16 rounds to nearest even")
  local b = t:to("bf16")
  T.close(b:totable(), {1.0, -2.5, 3.140625, 65536, 1e-8}, 1e-10, "bf16 keeps the exponent")
  T.eq(t:to("i32"):totable(), {1, -2, 3, 65504, 0}, "float to int truncates toward zero")
  T.eq(chai.tensor({200, 255}, "u8"):to("i8"):dtype(), "i8", "u8 to i8")
  T.eq(h:to("f32"):to("i64"):totable(), {1, -2, 3, 65504, 0}, "chained conversions")
  T.check(t:to("f32") ~= t, "to() returns a new tensor")
end

-- views share storage; clones and contiguous copies do not
do
  local t = chai.arange(6):view(2, 3)
  local v = t:view({3, 2})
  v:set(1, 1, 100)
  T.eq(t:get(1, 1), 100, "view shares storage")
  local tr = t:transpose(1, 2)
  T.eq(tr:shape(), {3, 2}, "transpose shape")
  T.check(not tr:is_contiguous(), "transpose is a strided view")
  tr:set(3, 2, -1)
  T.eq(t:get(2, 3), -1, "transpose shares storage")
  T.eq(t:transpose(-1, -2):shape(), {3, 2}, "negative dims")
  local sl = t:slice(2, 2, 3)
  T.eq(sl:totable(), {{1, 2}, {4, -1}}, "slice 2..3 inclusive")
  sl:set(1, 1, 50)
  T.eq(t:get(1, 2), 50, "slice shares storage")
  T.eq(t:slice(2, 1, -1, 2):totable(), {{100, 2}, {3, -1}}, "slice with step")
  T.eq(t:slice(2, -2):totable(), {{50, 2}, {4, -1}}, "negative start, default stop")
  T.eq(t:slice(1, 2, 1):shape(), {0, 3}, "stop = start - 1 is empty")
  local row = t[2]
  row[1] = 30
  T.eq(t:get(2, 1), 30, "t[i] is a view of row i")
  T.eq(t:select(2, 3):totable(), {2, -1}, "select a column")
  local c = t:clone()
  c:set(1, 1, 0)
  T.eq(t:get(1, 1), 100, "clone is a copy")
  local tc = tr:contiguous()
  T.check(tc:is_contiguous(), "contiguous copy")
  T.eq(tc:totable(), tr:totable(), "contiguous keeps values")
  tc:set(1, 1, 7)
  T.eq(t:get(1, 1), 100, "contiguous of a strided view is a copy")
  local same = t:contiguous()
  same:set(1, 1, 8)
  T.eq(t:get(1, 1), 8, "contiguous of a contiguous tensor is the same storage")
  local rs = tr:reshape(6)
  T.eq(rs:totable(), {8, 30, 50, 4, 2, -1}, "reshape of a strided view copies in its row-major order")
  T.eq(t:reshape(-1):shape(), {6}, "reshape infers -1")
  T.eq(t:view(3, -1):shape(), {3, 2}, "view infers -1")
  local p = chai.arange(24):view(2, 3, 4):permute{3, 1, 2}
  T.eq(p:shape(), {4, 2, 3}, "permute table")
  T.eq(p:get(2, 1, 3), 9, "permute element: x[1][3][2] = 9 (0-based 0*12+2*4+1)")
  T.eq(chai.arange(6):view(2, 3):permute(2, 1):shape(), {3, 2}, "permute varargs")
  local base = chai.arange(4)
  local view = base:view(2, 2)
  base:free()
  T.eq(view:totable(), {{0, 1}, {2, 3}}, "a view keeps the storage alive after its base is freed")
end

-- element access and metamethods that need no ops
do
  local t = chai.tensor({{1, 2}, {3, 4}, {5, 6}}, "i32")
  T.eq(#t, 3, "__len is the size of dim 1")
  T.eq(t[1][2], 2, "t[i][j]")
  T.eq(t[-1][-1], 6, "negative indices count from the end")
  T.eq(t:get(3, 1), 5, "get")
  t:set(3, 1, 50)
  T.eq(t[3][1], 50, "set")
  t[2] = 9
  T.eq(t:totable()[2], {9, 9}, "t[i] = number fills a row")
  t[1] = {7, 8}
  T.eq(t:totable()[1], {7, 8}, "t[i] = table copies a row")
  t[1] = chai.tensor({-1, -2})
  T.eq(t:totable()[1], {-1, -2}, "t[i] = tensor copies a row (with dtype conversion)")
  local v = chai.tensor({1, 2, 3})
  v[2] = 20
  T.eq(v[2], 20, "t[i] = v on a 1-D tensor")
  T.eq(chai.zeros({2, 2}):fill(3):totable(), {{3, 3}, {3, 3}}, "fill")
  T.eq(chai.zeros({2}):copy({4, 5}):totable(), {4, 5}, "copy from a table")
  T.eq(chai.tensor({{42}}):item(), 42, "item of a one-element tensor")
end

-- tostring
do
  T.eq(tostring(chai.tensor({{1, 2, 3}, {4, 5, 6}})), "chai.Tensor (2,3) f32\n[[1, 2, 3], [4, 5, 6]]",
    "tostring 2-D")
  T.eq(tostring(chai.tensor({1, 2}, "i64")), "chai.Tensor (2) i64\n[1, 2]", "tostring i64")
  T.eq(tostring(chai.tensor(0.5)), "chai.Tensor () f32\n0.5", "tostring 0-d")
  T.eq(tostring(chai.arange(10)), "chai.Tensor (10) f32\n[0, 1, 2, ..., 7, 8, 9]", "abbreviated")
  local s = tostring(chai.zeros({8, 8}))
  T.check(select(2, s:gsub("%.%.%.", "")) == 7, "abbreviated in every dim: " .. s)
  T.eq(tostring(chai.tensor({1 / 0, -1 / 0, 0 / 0})), "chai.Tensor (3) f32\n[inf, -inf, nan]", "inf/nan")
  T.eq(tostring(chai.tensor({0.1, 1 / 3})), "chai.Tensor (2) f32\n[0.1, 0.333333]", "6 digits")
end

-- ops: module functions, methods and metamethods (values computed by hand)
do
  local a = chai.tensor({{1, 2}, {3, 4}})
  T.eq((a + 1):totable(), {{2, 3}, {4, 5}}, "tensor + number")
  T.eq((10 - a):totable(), {{9, 8}, {7, 6}}, "number - tensor")
  T.eq((a * a):totable(), {{1, 4}, {9, 16}}, "elementwise *")
  T.eq((a / 2):totable(), {{0.5, 1}, {1.5, 2}}, "tensor / number")
  T.eq((1 / chai.tensor({2, 4})):totable(), {0.5, 0.25}, "number / tensor")
  T.eq((-a):totable(), {{-1, -2}, {-3, -4}}, "__unm")
  T.eq((a + chai.tensor({10, 20})):totable(), {{11, 22}, {13, 24}}, "broadcast a row")
  T.eq((a * chai.tensor({{2}, {3}})):totable(), {{2, 4}, {9, 12}}, "broadcast a column")
  T.eq((a - {1, 1}):totable(), {{0, 1}, {2, 3}}, "a table operand is a tensor")
  T.eq(chai.add(a, a):totable(), {{2, 4}, {6, 8}}, "chai.add")
  T.eq((a:transpose(1, 2) + 0):totable(), {{1, 3}, {2, 4}}, "ops read strided views")
  T.eq(a:matmul(a):totable(), {{7, 10}, {15, 22}}, "matmul")
  T.eq(chai.matmul(a, {{1}, {1}}):totable(), {{3}, {7}}, "matmul with a table")
  local batch = chai.tensor({{{1, 0}, {0, 1}}, {{2, 0}, {0, 2}}})
  T.eq(chai.matmul(batch, a):totable(), {{{1, 2}, {3, 4}}, {{2, 4}, {6, 8}}}, "batched matmul")
  T.eq(a:sum(), 10, "sum() is a number")
  T.eq(a:sum(1):totable(), {4, 6}, "sum(1) over rows")
  T.eq(a:sum(-1):totable(), {3, 7}, "sum(-1) over the last dim")
  local e1, e2 = math.exp(1), math.exp(2)
  T.close(a:softmax():totable(), {{e1 / (e1 + e2), e2 / (e1 + e2)}, {e1 / (e1 + e2), e2 / (e1 + e2)}},
    1e-6, "softmax over the last dim")
  T.close(chai.softmax(a, 1):totable()[1], {1 / (1 + e2), 1 / (1 + e2)}, 1e-6, "softmax over dim 1")
  T.close(a:log_softmax():totable()[1], {-math.log(1 + e1), 1 - math.log(1 + e1)}, 1e-6, "log_softmax")
  T.eq(chai.relu(chai.tensor({-1, 0, 2})):totable(), {0, 0, 2}, "relu")
  T.close(chai.tensor({-1, 0, 1}):gelu():totable(), {-0.158655254, 0, 0.841344746}, 1e-6, "exact gelu")
  local ln = chai.layernorm(chai.tensor({{1, 3}}), chai.tensor({2, 2}), chai.tensor({0, 1}))
  T.close(ln:totable(), {{-2 / math.sqrt(1 + 1e-5), 1 + 2 / math.sqrt(1 + 1e-5)}}, 1e-5, "layernorm")
  T.close(chai.layernorm(chai.tensor({{1, 3}}), nil, nil, 0):totable(), {{-1, 1}}, 1e-6,
    "layernorm without affine, eps 0")
  T.eq(chai.linear(a, {{1, 0}, {0, 1}, {1, 1}}, {0, 0, 1}):totable(), {{1, 2, 4}, {3, 4, 8}}, "linear")
  T.eq(chai.linear(a, {{1, 1}}):totable(), {{3}, {7}}, "linear without bias")
  T.eq(chai.embedding({2, 0}, {{1, 1}, {2, 2}, {3, 3}}):totable(), {{3, 3}, {1, 1}}, "embedding ids are 0-based values")
  T.eq(chai.embedding(chai.tensor({{1}}, "i64"), a):shape(), {1, 1, 2}, "embedding keeps the ids shape")
  local lse = math.log(e1 + e2)
  T.close(chai.cross_entropy(a, {1, 0}), ((lse - 2) + (math.log(math.exp(3) + math.exp(4)) - 3)) / 2,
    1e-6, "cross_entropy")
  T.close(chai.cross_entropy(a, {1, -100}), lse - 2, 1e-6, "ignore_index -100 by default")
  T.close(chai.cross_entropy(a, {1, 7}, {ignore_index = 7}), lse - 2, 1e-6, "ignore_index option")
  -- attention: one head, D = 1; causal query 1 sees only key 1
  local q = chai.tensor({{{{1}}, {{1}}}})  -- (1,2,1,1)
  local v = chai.tensor({{{{10}}, {{20}}}})
  local out = chai.attention(q, q, v, {causal = true})
  T.close(out:totable(), {{{{10}}, {{15}}}}, 1e-5, "causal attention with equal scores")
  local masked = chai.attention(q, q, v, {mask = {{1, 0}}})
  T.close(masked:totable(), {{{{10}}, {{10}}}}, 1e-5, "a key mask hides key 2")
  local k = chai.tensor({{{{0}}, {{1}}}})
  local p2 = math.exp(2) / (1 + math.exp(2))
  T.close(chai.attention(q, k, v, {scale = 2}):totable()[1][1][1][1], 10 * (1 - p2) + 20 * p2, 1e-4,
    "scale option")
end

-- release: free, __close, __gc; memory accounting
do
  collectgarbage()
  local live0 = chai.memory().live
  local t = chai.zeros({1000})
  T.check(chai.memory().live >= live0 + 4000, "chai.memory counts the new tensor")
  T.check(chai.memory().peak >= chai.memory().live, "peak >= live")
  t:free()
  T.eq(chai.memory().live, live0, "free releases the bytes")
  t:free() -- idempotent
  T.check(not t:is_alive(), "is_alive after free")
  T.raises(function() return t:shape() end, "tensor used after free")
  T.eq(tostring(t), "chai.Tensor (freed)", "tostring of a freed tensor")
  do
    local c <close> = chai.zeros({1000})
    T.check(chai.memory().live >= live0 + 4000, "alive inside the block")
  end
  T.eq(chai.memory().live, live0, "__close releases at the end of the block")
  local most = 0
  for _ = 1, 100 do -- 400 KB each, dead at once; Lua itself sees only a small userdata
    local _ = chai.zeros({100000})
    most = math.max(most, chai.memory().live - live0)
  end
  T.check(most <= 10 * 400064, "the GC nudge keeps dead large tensors few: at most " .. most .. " bytes")
  collectgarbage()
  collectgarbage()
  T.eq(chai.memory().live, live0, "__gc releases unreachable tensors")
end

-- pure-Lua helpers
do
  local t = chai.zeros({2, 5})
  T.eq(t:size(), {2, 5}, "size()")
  T.eq(t:size(2), 5, "size(2)")
  T.eq(t:size(-2), 2, "size(-2)")
  T.raises(function() t:size(3) end, "dim 3")
  T.check(chai.allclose(chai.tensor({1, 2}), {1, 2.0000001}), "allclose within tolerance")
  T.check(not chai.allclose(chai.tensor({1, 2}), {1, 2.1}), "allclose outside tolerance")
  T.check(chai.allclose({1, 2.1}, {1, 2}, {atol = 0.2}), "allclose atol option")
  T.check(not chai.allclose(chai.zeros({2, 2}), chai.zeros({4})), "allclose compares shapes")
  T.raises(function() chai.allclose(t, t, {tol = 1}) end, "unknown option 'tol'")
end

-- system functions
do
  T.check(type(chai.version) == "string" and chai.version:match("^%d+%.%d+%.%d+"), "version")
  local cpu = chai.cpu()
  T.check(({ref = 1, avx2 = 1, avx512 = 1, amx = 1})[cpu.simd], "cpu.simd " .. tostring(cpu.simd))
  for _, f in ipairs({"f32", "f16", "bf16", "int8", "int4"}) do
    T.check(type(cpu.kernels[f]) == "string" and #cpu.kernels[f] > 0, "cpu.kernels." .. f)
  end
  T.check(type(cpu.features) == "string" and type(cpu.vendor) == "string", "cpu strings")
  T.check(math.type(cpu.family) == "integer" and math.type(cpu.model) == "integer", "cpu numbers")
  T.check(math.type(cpu.threads) == "integer" and cpu.threads >= 1, "cpu.threads")
  T.check(type(cpu.blas_core) == "string" or type(cpu.blas_error) == "string", "blas info")
  if cpu.blas_core then
    T.check(type(cpu.blas_library) == "string" and type(cpu.blas_chosen_by) == "string", "blas strings")
    T.check(({sequential = 1, pthreads = 1, openmp = 1})[cpu.blas_parallel] ~= nil, "blas_parallel")
  end
  local n = chai.threads()
  T.eq(chai.threads(1), 1, "threads(1)")
  T.eq(chai.threads(), 1, "threads() reads back")
  chai.threads(n)
  T.eq(chai.cpu().threads, n, "threads restored")
end

T.finish()
