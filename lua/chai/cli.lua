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
-- run's result is the exit status: nothing or true -> 0, false -> 1, an integer -> that status
-- (use 2 for bad usage after printing a message on stderr). An error prints its message with a
-- traceback on stderr and exits with 1. The global `arg` is set as for a script (arg[0] = NAME).
-- Keep this file cheap to load: `chai help` reads it; require heavy modules inside run.
local M = {}

M.commands = {}

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
