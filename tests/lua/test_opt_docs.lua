-- docs/opt.md is tested: every ```lua block in it runs, in its own environment, and must not
-- raise (the blocks assert their own claims). Errors point at the line in the .md file.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"

local source = os.getenv("CHAI_SOURCE_DIR") or (dir .. "../..")
local path = source .. "/docs/opt.md"
local f = assert(io.open(path, "rb"), "cannot open " .. path)
local text = f:read("a")
f:close()

-- Collect the blocks with the line each starts on.
local blocks, current, lineno = {}, nil, 0
for line in (text .. "\n"):gmatch("([^\n]*)\n") do
  lineno = lineno + 1
  if current then
    if line:match("^```%s*$") then
      blocks[#blocks + 1] = current
      current = nil
    else
      current.lines[#current.lines + 1] = line
    end
  elseif line:match("^```lua%s*$") then
    current = {first = lineno + 1, lines = {}}
  end
end
T.check(current == nil, "every ```lua block is closed")
T.check(#blocks >= 4, "found " .. #blocks .. " lua blocks in " .. path)

for _, b in ipairs(blocks) do
  -- Leading newlines make the chunk's line numbers those of the .md file.
  local code = string.rep("\n", b.first - 1) .. table.concat(b.lines, "\n")
  local env = setmetatable({}, {__index = _G})
  local chunk, err = load(code, "@docs/opt.md", "t", env)
  if not chunk then
    T.check(false, "block at line " .. b.first .. " does not compile: " .. err)
  else
    local ok, run_err = pcall(chunk)
    T.check(ok, "block at line " .. b.first .. ": " .. tostring(run_err))
  end
end
collectgarbage()

T.finish()
