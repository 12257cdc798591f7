-- Tokenizer benchmark: encode every sentence of SST-2's glue_train.tsv (67,349 sentences, about
-- 3.6 MB of text) with chai, and with the GPT-2 reference encoder in Python (the fixture generator,
-- tests/fixtures/make_tokenizer_fixture.py) on the same machine, and print MB/s and the ratio.
--   chai script scripts/bench/tokenizer.lua [--data DIR] [--reps R] [--no-python]
-- DIR defaults to $CHAI_DATA_DIR, else ../shared/data beside the repository. One core: the
-- tokenizer is single-threaded. "cold" is a fresh tokenizer (empty cache), as Python's first pass;
-- "warm" the median of R more passes over the same sentences.
local chai = require "chai"
local bench = require("chai.core").bench

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local opts = {data = os.getenv("CHAI_DATA_DIR") or here .. "../../../shared/data", reps = 3,
              python = true}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--data" then opts.data = arg[i + 1]; i = i + 1
  elseif a == "--reps" then opts.reps = math.tointeger(tonumber(arg[i + 1])); i = i + 1
  elseif a == "--no-python" then opts.python = false
  else error("tokenizer.lua: unknown option '" .. a .. "' (use --data DIR, --reps R, --no-python)") end
  i = i + 1
end
assert(opts.reps and opts.reps >= 1, "tokenizer.lua: --reps needs an integer >= 1")

local path = opts.data .. "/sst2/glue_train.tsv"
local texts, bytes = {}, 0
local f = assert(io.open(path, "rb"))
f:read("l") -- header
for line in f:lines() do
  local s = line:match("^([^\t]*)\t")
  texts[#texts + 1] = s
  bytes = bytes + #s
end
f:close()

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local function pass(tok)
  local t, n = bench.now(), 0
  for k = 1, #texts do n = n + #tok:encode(texts[k]) end
  return bench.now() - t, n
end

local tokdir = opts.data .. "/opt-tokenizer"
local t_load = bench.now()
local tok = chai.tokenizer.load(tokdir)
t_load = bench.now() - t_load
local cold, tokens = pass(tok)
local warm = {}
for _ = 1, opts.reps do warm[#warm + 1] = (pass(tok)) end
warm = median(warm)
-- the engine alone: one call on the whole text (newline-joined), no per-sentence Lua tables
local joined = table.concat(texts, "\n")
local whole = {}
for _ = 1, opts.reps do
  local fresh = chai.tokenizer.load(tokdir)
  local t = bench.now()
  fresh:encode(joined)
  whole[#whole + 1] = bench.now() - t
  fresh:free()
end
whole = median(whole)

local mb = bytes / 1e6
print(("text: %s, %d sentences, %d bytes, %d tokens"):format(path, #texts, bytes, tokens))
print(("chai load       %8.3f s"):format(t_load))
print(("chai cold       %8.3f s  %7.2f MB/s  (tok:encode per sentence, fresh cache)"):format(cold, mb / cold))
print(("chai warm       %8.3f s  %7.2f MB/s  (median of %d passes)"):format(warm, mb / warm, opts.reps))
print(("chai one call   %8.3f s  %7.2f MB/s  (whole text joined by newlines, fresh cache)"):format(whole, (#joined / 1e6) / whole))

if opts.python then
  local script = here .. "../../tests/fixtures/make_tokenizer_fixture.py"
  local cmd = ("/usr/bin/python3 %q --data %q --bench %q 2>&1"):format(script, opts.data, path)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local py_mbs = tonumber(out:match("python_mb_per_s (%S+)"))
  local py_tokens = tonumber(out:match("python_tokens (%d+)"))
  if py_mbs then
    print(("python cold     %8.3f s  %7.2f MB/s  (GPT-2 encoder.py algorithm, regex module)"):format(
      tonumber(out:match("python_seconds (%S+)")), py_mbs))
    print(("ratio chai cold / python: %.1fx   same token count: %s"):format(mb / cold / py_mbs,
      tostring(py_tokens == tokens)))
  else
    print("python reference did not run: " .. out)
  end
end
