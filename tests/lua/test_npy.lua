-- NumPy .npy from Lua: files written by numpy (tests/fixtures/npy) load with the right dtype,
-- shape and values and re-save byte for byte; every supported dtype round-trips; Fortran order,
-- '<f8', big-endian and malformed files (some written here byte by byte) are refused by name.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"

local fixtures = (os.getenv("CHAI_TEST_FIXTURES") or (dir .. "../fixtures")) .. "/npy/"
local tmp = T.tmpdir()

-- numpy's files
local expect = {
  {"f32_2x3.npy", "f32", {2, 3}, {{-1, -0.5, 0}, {0.5, 1, 1.5}}},
  {"f16_4.npy", "f16", {4}, {0.0999755859375, -2, 65504, 0.0001000165939331}},
  {"i32_2x2.npy", "i32", {2, 2}, {{1, -2}, {2147483647, -2147483648}}},
  {"i64_3.npy", "i64", {3}, {2 ^ 40 + 1, -7, 0}},
  {"u8_5.npy", "u8", {5}, {0, 1, 127, 128, 255}},
  {"i8_3.npy", "i8", {3}, {-128, 0, 127}},
  {"f32_scalar.npy", "f32", {}, 2.5},
  {"f32_1x1x2x2.npy", "f32", {1, 1, 2, 2}, {{{{0, 1}, {2, 3}}}}},
  {"i32_v2.npy", "i32", {3}, {5, 6, 7}},
}
for _, e in ipairs(expect) do
  local name, dtype, shape, values = e[1], e[2], e[3], e[4]
  local t = chai.load_npy(fixtures .. name)
  T.eq(t:dtype(), dtype, name .. " dtype")
  T.eq(t:shape(), shape, name .. " shape")
  T.close(t:totable(), values, 1e-12, name .. " values")
  if name ~= "i32_v2.npy" then -- chai writes version 1.0
    local out = tmp .. "/" .. name
    t:save_npy(out)
    T.check(T.read_bytes(out) == T.read_bytes(fixtures .. name), name .. " re-saves byte for byte")
  end
end

-- every supported dtype round-trips; views are written in their C order
for _, dtype in ipairs({"f32", "f16", "i32", "i64", "i8", "u8"}) do
  local t = chai.tensor({{1, 2, 3}, {4, 5, 6}}, dtype)
  local path = tmp .. "/rt_" .. dtype .. ".npy"
  T.check(t:save_npy(path) == t, "save_npy returns the tensor")
  local back = chai.load_npy(path)
  T.eq(back:dtype(), dtype, dtype .. " round trip dtype")
  T.eq(back:totable(), t:totable(), dtype .. " round trip values")
  local tr = chai.load_npy(t:transpose(1, 2):save_npy(path) and path)
  T.eq(tr:totable(), {{1, 4}, {2, 5}, {3, 6}}, dtype .. " transposed view saved in C order")
end
T.eq(chai.load_npy(chai.randn({3, 4}, {seed = 1}):save_npy(tmp .. "/r.npy") and tmp .. "/r.npy"):totable(),
  chai.randn({3, 4}, {seed = 1}):totable(), "f32 bits survive")
T.raises(function() chai.zeros({2}, "bf16"):save_npy(tmp .. "/bf.npy") end, {"bf16", "bf.npy"},
  "bf16 has no numpy dtype")
T.check(io.open(tmp .. "/bf.npy") == nil, "a refused save leaves no file")

-- numpy's files that chai refuses
T.raises(function() chai.load_npy(fixtures .. "f32_fortran.npy") end, {"f32_fortran.npy", "Fortran"})
T.raises(function() chai.load_npy(fixtures .. "f64_3.npy") end, {"f64_3.npy", "'<f8'"})
T.raises(function() chai.load_npy(fixtures .. "f32_bigendian.npy") end, {"big-endian", "'>f4'"})

-- files written here byte by byte
local function npy(dict, data)
  local total = (10 + #dict + 1 + 63) // 64 * 64
  local header = dict .. string.rep(" ", total - 10 - #dict - 1) .. "\n"
  return "\x93NUMPY\x01\x00" .. string.pack("<I2", #header) .. header .. (data or "")
end
local p = tmp .. "/bad.npy"
T.write_bytes(p, npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", string.pack("<ff", 1.5, -2)))
T.eq(chai.load_npy(p):totable(), {1.5, -2}, "a hand-written file loads")
T.write_bytes(p, npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", string.rep("\0", 16)))
T.raises(function() chai.load_npy(p) end, {"bad.npy", "Fortran-order", "fortran_order: True"})
T.write_bytes(p, npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", string.pack("<dd", 1, 2)))
T.raises(function() chai.load_npy(p) end, {"bad.npy", "unsupported dtype '<f8'"})
T.write_bytes(p, npy("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }", "abcd"))
T.raises(function() chai.load_npy(p) end, {"(100000,100000)", "40000000000 data bytes", "holds 4"},
  "a header that lies about the size")
T.write_bytes(p, "GIF89a not an npy file")
T.raises(function() chai.load_npy(p) end, {"bad magic", "47 49 46 38 39 61"})
T.write_bytes(p, npy("{'descr': '<f4', 'shape': (2,), }", "12345678"))
T.raises(function() chai.load_npy(p) end, "missing key 'fortran_order'")
T.raises(function() chai.load_npy(tmp .. "/nope.npy") end, {"nope.npy", "cannot open"})
T.raises(function() chai.zeros(2):save_npy(tmp .. "/no/such/dir.npy") end, "no/such/dir.npy")

T.finish()
