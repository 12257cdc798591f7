-- Shared helpers for the Lua tests: checks that count instead of stopping, and finish(), which
-- prints "N passed, N failed" and raises (exit status 1) when anything failed.
-- Usage at the top of a test (works under `chai script` and under a stock lua5.4):
--   local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
--   package.path = dir .. "?.lua;" .. package.path
--   local T = require "helper"
local T = {passed = 0, failed = 0}

-- The first caller outside this file: the test line that made the check.
local function where()
  for level = 3, 20 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if not info.short_src:find("helper.lua", 1, true) then
      return info.short_src .. ":" .. info.currentline
    end
  end
  return "?"
end

local function record(ok, msg)
  if ok then
    T.passed = T.passed + 1
  else
    T.failed = T.failed + 1
    io.stderr:write("FAILED ", where(), ": ", msg, "\n")
  end
  return ok
end

function T.check(cond, what) return record(cond and true or false, what or "check") end

-- Deep equality for numbers, strings, booleans and nested tables.
local function deep_eq(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  if #a ~= #b then return false end
  for k, v in pairs(a) do
    if not deep_eq(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end
T.deep_eq = deep_eq

local function show(v)
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  for i = 1, #v do parts[i] = show(v[i]) end
  return "{" .. table.concat(parts, ", ") .. "}"
end
T.show = show

function T.eq(got, want, what)
  return record(deep_eq(got, want), (what or "eq") .. ": got " .. show(got) .. ", want " .. show(want))
end

-- |got - want| <= tol elementwise over numbers or nested tables of numbers.
function T.close(got, want, tol, what)
  tol = tol or 1e-6
  local function close(a, b)
    if type(a) == "number" and type(b) == "number" then return math.abs(a - b) <= tol end
    if type(a) ~= "table" or type(b) ~= "table" or #a ~= #b then return false end
    for i = 1, #a do
      if not close(a[i], b[i]) then return false end
    end
    return true
  end
  return record(close(got, want), (what or "close") .. ": got " .. show(got) .. ", want " ..
    show(want) .. " (tol " .. tol .. ")")
end

-- fn must raise an error whose message contains every needle (plain text).
function T.raises(fn, needles, what)
  if type(needles) ~= "table" then needles = {needles} end
  local ok, err = pcall(fn)
  if ok then return record(false, (what or "raises") .. ": no error raised") end
  err = tostring(err)
  for _, n in ipairs(needles) do
    if not err:find(n, 1, true) then
      return record(false, (what or "raises") .. ": error '" .. err .. "' lacks '" .. n .. "'")
    end
  end
  return record(true)
end

-- A fresh temporary directory, removed by T.finish().
local tmpdirs = {}
function T.tmpdir()
  local name = os.tmpname()
  os.remove(name)
  assert(os.execute("mkdir -p '" .. name .. "'"), "cannot create " .. name)
  tmpdirs[#tmpdirs + 1] = name
  return name
end

function T.write_bytes(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

function T.read_bytes(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- Runs every ```lua block of docs/<name> (from CHAI_SOURCE_DIR, else the repository holding this
--- file), each in its own environment; a block must compile and not raise (the blocks assert their
--- own claims). Errors point at the line in the .md file. At least `min_blocks` must be found.
function T.run_doc_blocks(name, min_blocks)
  local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
  local source = os.getenv("CHAI_SOURCE_DIR") or (dir .. "../..")
  local path = source .. "/docs/" .. name
  local f = assert(io.open(path, "rb"), "cannot open " .. path)
  local text = f:read("a")
  f:close()
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
  T.check(#blocks >= min_blocks, "found " .. #blocks .. " lua blocks in " .. path)
  for _, b in ipairs(blocks) do
    -- Leading newlines make the chunk's line numbers those of the .md file.
    local code = string.rep("\n", b.first - 1) .. table.concat(b.lines, "\n")
    local env = setmetatable({}, {__index = _G})
    local chunk, err = load(code, "@docs/" .. name, "t", env)
    if not chunk then
      T.check(false, "block at line " .. b.first .. " does not compile: " .. err)
    else
      local ok, run_err = pcall(chunk)
      T.check(ok, "block at line " .. b.first .. ": " .. tostring(run_err))
    end
  end
  collectgarbage()
end

function T.finish()
  for _, d in ipairs(tmpdirs) do os.execute("rm -rf '" .. d .. "'") end
  print(("%d passed, %d failed"):format(T.passed, T.failed))
  if T.failed > 0 then error(("%d check(s) failed"):format(T.failed), 0) end
end

return T
