-- chai.cli: subcommands of the `chai` command that are written in Lua.
--
-- `chai NAME ARGS...` looks NAME up among the commands written in C (lua/cli/main.c: script, repl,
-- version, env, help) first, then in M.commands. A new subcommand is one entry here:
--
--   M.commands.download = {
--     args = "REPO [FILE...]",                   -- the argument synopsis shown by `chai help`
--     summary = "fetch a model from the Hub",    -- one line for `chai help`
--     run = function(args) ... end,              -- args: the words after NAME, as a list
--   }
--
-- run's result is the exit status: nothing or true -> 0, false -> 1, an integer -> that status.
-- A mistake of the user's (a bad argument, a repo that does not exist) is M.fail(message, status):
-- one line on stderr, no traceback. Any other error prints its message with a traceback and exits
-- with 1. The global `arg` is set as for a script (arg[0] = NAME).
-- Keep this file cheap to load: `chai help` reads it; require heavy modules inside run.
--
-- The same helpers serve the bundled scripts (scripts/): M.options parses their command line,
-- M.fail and M.guard turn the user's mistakes into one line; see docs/cli.md.
local M = {}

M.commands = {}

-- ---------------------------------------------------------------------------------------------
-- Errors for the person at the command line

-- The metatable of a failure. lua/cli/run.c knows it by this __name: it prints the message as
-- it is, adds no traceback and exits with the failure's status.
local Failure = {__name = "chai.cli.Failure"}
Failure.__tostring = function(f) return f.message end

--- Stops the program with a message for the person at the command line: `chai` prints `message`
--- as it is, on one line of stderr, without a traceback, and exits with `status` (an integer in
--- 1..125, default 1; 2 = bad usage). For the user's mistakes only (a bad option, a missing file,
--- model or data): a bug keeps error() and its traceback. Name the program in the message
--- ("zeroshot.lua: --limit 'x': needs a positive integer"). Under a stock lua5.4 the message is
--- printed through __tostring, also without a traceback.
function M.fail(message, status)
  if type(message) ~= "string" then
    error("chai.cli.fail: message must be a string, got " .. type(message), 2)
  end
  status = status == nil and 1 or status
  if math.type(status) ~= "integer" or status < 1 or status > 125 then
    error("chai.cli.fail: status must be an integer in 1..125, got " .. tostring(status), 2)
  end
  error(setmetatable({message = message, status = status}, Failure), 0)
end

--- Whether `err` (a value caught by pcall) was raised by M.fail.
function M.is_failure(err) return getmetatable(err) == Failure end

--- An error value's message without the "file.lua:12: " position Lua puts in front of it.
function M.message(err)
  if M.is_failure(err) then return err.message end
  return (tostring(err):gsub("^[^%s:]+%.lua:%d+: ", ""))
end

--- Calls fn(...) and returns its results. When fn raises, stops with M.fail(what .. ": " ..
--- the error's message, status): for calls whose failure the user can fix (loading the model, the
--- tokenizer or the data named on the command line). A failure raised inside passes unchanged.
function M.guard(what, fn, ...)
  local res = table.pack(pcall(fn, ...))
  if res[1] then return table.unpack(res, 2, res.n) end
  if M.is_failure(res[2]) then error(res[2], 0) end
  M.fail(what .. ": " .. M.message(res[2]))
end

-- ---------------------------------------------------------------------------------------------
-- Command lines of the bundled scripts

local kinds = {
  string = function(raw) return raw end,
  number = function(raw) return tonumber(raw), "needs a number" end,
  integer = function(raw) return math.tointeger(tonumber(raw)), "needs an integer" end,
  count = function(raw)
    local v = math.tointeger(tonumber(raw))
    return v and v >= 1 and v or nil, "needs a positive integer"
  end,
  integers = function(raw) -- "1,2,3"
    local list = {}
    for item in (raw .. ","):gmatch("([^,]*),") do
      local v = math.tointeger(tonumber(item))
      if not v then return nil, "needs integers separated by commas" end
      list[#list + 1] = v
    end
    return list
  end,
}

--- Parses a bundled script's arguments (the words after its name). spec:
---   prog      the name used in messages ("chai_sst2.lua")
---   usage     the text -h/--help prints (on stdout, then exit 0)
---   options   {name = kind}: "--batch-size" is the key batch_size; a kind is "flag" (no value:
---             true), "string", "number", "integer", "count" (an integer >= 1), "integers"
---             ("1,2,3"), or a function(raw) returning the value, or nil and why it is refused
---   positional  how many plain words are allowed (default 0)
--- Values come as "--name VALUE" or "--name=VALUE". Returns the options given (a table keyed by
--- name) and the list of plain words. An unknown option, a missing or bad value, or a word too
--- many is M.fail(..., 2): one line naming it.
function M.options(args, spec)
  local prog, known, max_words = spec.prog, spec.options or {}, spec.positional or 0
  local function bad(msg) M.fail(prog .. ": " .. msg .. " (--help lists the options)", 2) end
  local opts, words = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "-h" or a == "--help" then
      io.stdout:write(spec.usage or ("usage: " .. prog), "\n")
      os.exit(0)
    end
    local flag, inline = a:match("^%-%-([%w][%w%-]*)=(.*)$")
    flag = flag or a:match("^%-%-([%w][%w%-]*)$")
    if flag then
      local key = flag:gsub("%-", "_")
      local kind = known[key]
      if kind == nil then bad("unknown option '--" .. flag .. "'") end
      if kind == "flag" then
        if inline then bad("--" .. flag .. " takes no value") end
        opts[key] = true
      else
        local raw = inline
        if raw == nil then
          i = i + 1
          raw = args[i]
          if raw == nil then bad("--" .. flag .. " needs a value") end
        end
        local convert = type(kind) == "function" and kind or kinds[kind]
        if not convert then error(prog .. ": option --" .. flag .. " has an unknown kind " .. tostring(kind), 2) end
        local v, why = convert(raw)
        if v == nil then bad(string.format("--%s '%s': %s", flag, raw, why or "bad value")) end
        opts[key] = v
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      bad("unknown option '" .. a .. "'")
    else
      if #words >= max_words then bad("unexpected argument '" .. a .. "'") end
      words[#words + 1] = a
    end
    i = i + 1
  end
  return opts, words
end

M.commands.download = {
  args = "REPO [FILE...] [--revision R]",
  summary = "fetch files of a Hugging Face Hub repo into the shared cache (docs/hub.md)",
  run = function(args) return require("chai.hub").cli_download(args) end,
}

M.commands.serve = {
  args = "[--host H] [--port N] [--results DIR] [--token T] [--jobs N]",
  summary = "the REST API and web page: start searches, follow them (docs/serve.md)",
  run = function(args) return require("chai.serve").cli(args) end,
}

-- One value as the REPL shows it: tables one level deep ({2, 2}, {live = 8, peak = 16}), strings
-- quoted inside tables, anything else (tensors included) with tostring.
local function show(v, nested)
  local t = type(v)
  if t == "string" then return nested and string.format("%q", v) or v end
  if t ~= "table" or getmetatable(v) ~= nil and getmetatable(v).__tostring then return tostring(v) end
  if nested then return "{...}" end
  local parts, n = {}, #v
  for i = 1, math.min(n, 20) do parts[#parts + 1] = show(v[i], true) end
  if n > 20 then parts[#parts + 1] = "... (" .. n .. " items)" end
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for i, k in ipairs(keys) do
    if i > 20 then parts[#parts + 1] = "... (" .. #keys .. " keys)" break end
    local name = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. show(k, true) .. "]"
    parts[#parts + 1] = name .. " = " .. show(v[k], true)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

--- What the REPL calls to print a chunk's results.
function M.repl_print(...)
  local out = {}
  for i = 1, select("#", ...) do out[i] = show((select(i, ...)), false) end
  print(table.concat(out, "\t"))
end

return M
