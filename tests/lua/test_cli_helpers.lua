-- chai.cli's helpers for the command line of commands and bundled scripts: options (kinds,
-- "--name=value", flags, plain words), fail (a failure object with a status), guard and message.
-- What the `chai` command prints for a failure (one line, no traceback, its status) is
-- tests/cli/test_cli.sh.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local cli = require "chai.cli"

-- A failure raised by fn: its message and status.
local function failure(fn)
  local ok, err = pcall(fn)
  if ok then return nil, "no error" end
  if not cli.is_failure(err) then return nil, "not a failure: " .. tostring(err) end
  return err.message, err.status
end

local spec = {prog = "p.lua", usage = "usage: p", positional = 1,
              options = {model = "string", lr = "number", seed = "integer", batch_size = "count",
                         seeds = "integers", quick = "flag",
                         mode = function(v) return (v == "a" or v == "b") and v or nil, "a or b" end}}
local o, words = cli.options({"--model", "m", "--lr=0.5", "--seed", "-3", "--batch-size", "8",
                              "--seeds", "1,2,3", "--quick", "--mode=b", "train"}, spec)
T.eq({o.model, o.lr, o.seed, o.batch_size, o.quick, o.mode}, {"m", 0.5, -3, 8, true, "b"}, "values by kind")
T.eq(o.seeds, {1, 2, 3}, "integers")
T.eq(words, {"train"}, "a plain word")
T.eq(math.type(o.seed), "integer", "integer kind gives an integer")
o, words = cli.options({}, spec)
T.eq(next(o), nil, "nothing given: no keys (the caller's defaults stay)")
T.eq(#words, 0, "no words")

local function bad(args, message, what)
  local msg, status = failure(function() cli.options(args, spec) end)
  T.eq(msg, message, what)
  T.eq(status, 2, what .. ": bad usage")
end
bad({"--frob"}, "p.lua: unknown option '--frob' (--help lists the options)", "unknown option")
bad({"-x"}, "p.lua: unknown option '-x' (--help lists the options)", "unknown short option")
bad({"--model"}, "p.lua: --model needs a value (--help lists the options)", "missing value")
bad({"--lr", "fast"}, "p.lua: --lr 'fast': needs a number (--help lists the options)", "not a number")
bad({"--seed", "1.5"}, "p.lua: --seed '1.5': needs an integer (--help lists the options)", "not an integer")
bad({"--batch-size", "0"}, "p.lua: --batch-size '0': needs a positive integer (--help lists the options)", "count 0")
bad({"--seeds", "1,x"}, "p.lua: --seeds '1,x': needs integers separated by commas (--help lists the options)",
    "integers")
bad({"--mode", "c"}, "p.lua: --mode 'c': a or b (--help lists the options)", "a function kind says why")
bad({"--quick=yes"}, "p.lua: --quick takes no value (--help lists the options)", "a flag with a value")
bad({"one", "two"}, "p.lua: unexpected argument 'two' (--help lists the options)", "a word too many")
T.raises(function() cli.options({"--x", "1"}, {prog = "p", options = {x = "colour"}}) end,
         "option --x has an unknown kind colour", "a bad spec is the caller's bug")

-- fail, guard, message
local msg, status = failure(function() cli.fail("p.lua: no") end)
T.eq({msg, status}, {"p.lua: no", 1}, "fail: default status 1")
msg, status = failure(function() cli.fail("p.lua: usage", 2) end)
T.eq(status, 2, "fail: a given status")
T.raises(function() cli.fail(42) end, "message must be a string", "fail: message type")
T.raises(function() cli.fail("x", 0) end, "status must be an integer in 1..125, got 0", "fail: status 0")
T.raises(function() cli.fail("x", 200) end, "status must be an integer in 1..125", "fail: status 200")
local ok, err = pcall(cli.fail, "shown")
T.eq(tostring(err), "shown", "a failure's tostring is its message (a stock lua5.4 prints it)")
T.eq({cli.guard("p.lua", function(a, b) return a + b, "two" end, 1, 2)}, {3, "two"}, "guard passes results")
msg, status = failure(function() cli.guard("p.lua: --model m", error, "x.lua:12: cannot open m") end)
T.eq({msg, status}, {"p.lua: --model m: cannot open m", 1}, "guard: the error, position removed")
msg, status = failure(function() cli.guard("outer", cli.fail, "inner", 2) end)
T.eq({msg, status}, {"inner", 2}, "guard: a failure inside passes unchanged")
T.eq(cli.message("/a/b.lua:3: oops"), "oops", "message removes the position")
T.eq(cli.message("no position here: fine"), "no position here: fine", "message keeps other text")
T.eq(cli.message(err), "shown", "message of a failure")
T.check(not cli.is_failure("text") and not cli.is_failure({message = "x"}), "is_failure wants the real thing")
T.check(ok == false, "pcall catches a failure")

T.finish()
