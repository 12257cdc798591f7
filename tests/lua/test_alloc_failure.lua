-- An injected failing allocator: every failure is a Lua error naming the allocation, nothing is
-- leaked, and the state stays usable afterwards.
local chai = require "chai"
local testing = require("chai.core").testing

local passed, failed = 0, 0
local function check(cond, what)
  if cond then passed = passed + 1 else failed = failed + 1; io.stderr:write("FAILED: " .. what .. "\n") end
end

local a = chai.ones({64, 64})
local live = chai.memory().live
for n = 1, 3 do
  testing.fail_alloc_after(n)
  local ok, err = pcall(function()
    local x = chai.zeros({128, 128})
    local y = x + a:sum()
    return y:clone()
  end)
  testing.fail_alloc_after(0)
  check(not ok and tostring(err):find("out of memory", 1, true), "failure " .. n .. " is reported: " .. tostring(err))
end
collectgarbage(); collectgarbage()
check(chai.memory().live == live, "nothing leaked (" .. chai.memory().live .. " vs " .. live .. " bytes live)")
local b = a + 1
check(b:sum() == 2 * 64 * 64, "the state stays usable")
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
