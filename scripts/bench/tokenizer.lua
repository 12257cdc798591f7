-- Tokenizer benchmark: encode every sentence of SST-2's train split (67,349 sentences, about
-- 3.6 MB of text) with chai, and with the GPT-2 reference encoder in Python (the fixture generator,
-- tests/fixtures/make_tokenizer_fixture.py) on the same machine, and print MB/s and the ratio.
--   chai script scripts/bench/tokenizer.lua [--data DIR] [--reps R] [--no-python]
-- The sentences and the tokenizer come through chai.data from DIR, else $CHAI_DATA_DIR, else the
-- Hub; the sentences without the trailing space GLUE ends them with (as the data folder's
-- sst2/glue_train.tsv has them). One core: the tokenizer is single-threaded. "cold" is a fresh
-- tokenizer (empty cache), as Python's first pass; "warm" the median of R more passes over the same
-- sentences.
local chai = require "chai"
local cli = require "chai.cli"
local bench = require("chai.core").bench

local PROG = "tokenizer.lua"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local opts = {reps = 3, python = true}
for k, v in pairs(cli.options(arg, {
  prog = PROG,
  usage = "usage: chai script scripts/bench/tokenizer.lua [--data DIR] [--reps R] [--no-python]",
  options = {data = "string", reps = "count", no_python = "flag"},
})) do opts[k] = v end
if opts.no_python then opts.python = false end

local ds = cli.guard(PROG, chai.data.task, "sst2", "train", {data_dir = opts.data})
local texts, bytes = {}, 0
for k, row in ipairs(ds.rows) do
  texts[k] = row.sentence:gsub(" $", "")
  bytes = bytes + #texts[k]
end
local tok0, tokdir = cli.guard(PROG, chai.data.tokenizer, {data_dir = opts.data})
tok0:free()
if tokdir:match("^hub:") then -- the snapshot folder the tokenizer was read from
  tokdir = chai.hub.snapshot(chai.data.tokenizer_repo, {files = {"vocab.json", "merges.txt"}, quiet = true})
end

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local function pass(tok)
  local t, n = bench.now(), 0
  for k = 1, #texts do n = n + #tok:encode(texts[k]) end
  return bench.now() - t, n
end

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
print(("text: %s, %d sentences, %d bytes, %d tokens"):format(ds.source, #texts, bytes, tokens))
print(("chai load       %8.3f s"):format(t_load))
print(("chai cold       %8.3f s  %7.2f MB/s  (tok:encode per sentence, fresh cache)"):format(cold, mb / cold))
print(("chai warm       %8.3f s  %7.2f MB/s  (median of %d passes)"):format(warm, mb / warm, opts.reps))
print(("chai one call   %8.3f s  %7.2f MB/s  (whole text joined by newlines, fresh cache)"):format(whole, (#joined / 1e6) / whole))

if opts.python then
  -- The peer reads <data>/opt-tokenizer and a TSV of the same sentences, written to a temporary
  -- folder.
  local script = here .. "../../tests/fixtures/make_tokenizer_fixture.py"
  local tmp = os.tmpname()
  os.remove(tmp)
  assert(os.execute(("mkdir -p %q && ln -s %q %q"):format(tmp, tokdir, tmp .. "/opt-tokenizer")))
  local f = assert(io.open(tmp .. "/train.tsv", "wb"))
  f:write("sentence\tlabel\n")
  for k, t in ipairs(texts) do f:write(t, "\t", ds.rows[k].label, "\n") end
  f:close()
  local cmd = ("/usr/bin/python3 %q --data %q --bench %q 2>&1"):format(script, tmp, tmp .. "/train.tsv")
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  os.execute(("rm -rf %q"):format(tmp))
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
