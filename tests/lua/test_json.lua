-- chai.core.json: decode/encode round trips, null, arrays vs objects, and errors.
local json = require("chai.core").json
local passed, failed = 0, 0
local function check(cond, what)
  if cond then passed = passed + 1 else failed = failed + 1; io.stderr:write("FAILED: " .. what .. "\n") end
end
local function check_error(fn, needle, what)
  local ok, err = pcall(fn)
  check(not ok and tostring(err):find(needle, 1, true) ~= nil, what .. " (got: " .. tostring(err) .. ")")
end

local v = json.decode('{"layers":[{"layer":0,"clusters":[[0,3],[1]]}],"x":1.5,"n":null,"t":true,"s":"é\\n"}')
check(v.layers[1].layer == 0 and math.type(v.layers[1].layer) == "integer", "integers stay integers")
check(v.layers[1].clusters[1][2] == 3, "nested arrays")
check(v.x == 1.5 and v.n == json.null and v.t == true and v.s == "é\n", "scalars")
local back = json.decode(json.encode(v))
check(back.layers[1].clusters[2][1] == 1 and back.x == 1.5 and back.n == json.null, "round trip")
check(json.encode({1, 2, 3}) == "[1,2,3]", "array")
check(json.encode({}) == "{}", "empty table is an object")
check(json.encode(setmetatable({}, json.array_mt)) == "[]", "empty array")
check(json.encode(json.decode("[]")) == "[]", "decoded empty array stays an array")
check(json.encode({a = "x"}) == '{"a":"x"}', "object")
check(json.encode("a\"b") == '"a\\"b"', "string escaping")
check(json.encode({a = 1}, {indent = true}):find("\n"), "indent")
check_error(function() json.decode("{bad") end, "malformed JSON at byte", "malformed")
check_error(function() json.decode("[1,]") end, "malformed JSON", "trailing comma")
check_error(function() json.encode({[true] = 1}) end, "neither a string nor a number", "bad key")
check_error(function() json.encode(0 / 0) end, "NaN", "NaN")
check_error(function() json.encode(print) end, "cannot encode", "function")
local cycle = {}; cycle.self = cycle
check_error(function() json.encode(cycle) end, "too deep", "cycle")
check_error(function() json.decode(string.rep("[", 500) .. string.rep("]", 500)) end, "", "deep nesting is refused")
-- strict: what chai serve asks of a request body
local strict = {strict = true}
check(json.decode('{"a": 1}  \r\n', strict).a == 1, "strict: trailing white space is fine")
check(json.decode('{"a": 1} x').a == 1, "not strict: bytes after the value are ignored")
check_error(function() json.decode('{"a": 1} x', strict) end, "malformed JSON at byte 10", "strict: trailing bytes")
check_error(function() json.decode('{"a": 1}{"b": 2}', strict) end, "malformed JSON", "strict: two values")
check(json.decode('{"a": 1, "a": 2}').a == 2, "not strict: the last of a repeated key wins")
check_error(function() json.decode('{"a": 1, "a": 2}', strict) end, "key 'a' appears twice", "strict: a repeated key")
check_error(function() json.decode('{"x": {"a": null, "a": 1}}', strict) end, "appears twice", "strict: a repeated key set to null, nested")
check(json.decode('[{"a": 1}, {"a": 2}]', strict)[2].a == 2, "strict: the same key in two objects")
check_error(function() json.decode('{"a": "x\\u0000y"}', strict) end, "NUL character", "strict: \\u0000")
check_error(function() json.decode('{"a": "x"}\0', strict) end, "NUL character", "strict: a NUL byte")
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
