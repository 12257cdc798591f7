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

return M
