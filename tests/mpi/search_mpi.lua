-- The distributed search (docs/distributed.md#distributed-search), started by test_search_mpi.sh
-- in one process: it runs experiments/search.lua --quick on a tiny random classifier with the test
-- data once in one process and once under `mpirun -n 2`, and checks that the two runs measured
-- the same configurations with the same recipes and accuracy (timings differ, accuracy does not:
-- the seed fixes it), that every line says which rank ran it, that rank 1 alone wrote the folder;
-- then a configuration made to fail on rank 2 (the CHAI_SEARCH_TEST_FAIL hook) is reported as
-- failed while the others finish, and a --resume in one process runs only that one; a rank that
-- cannot set up has its configurations reported as failed; and a 2-rank --resume takes what a rank
-- kept in its own file (results.rank2.jsonl) when the run ended before the gather.
--   chai script search_mpi.lua CHAI MPIEXEC
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "../lua/?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"
local json = require("chai.core").json
local chai_bin, mpiexec = arg[1], arg[2]
local data = assert(os.getenv("CHAI_DATA_DIR"), "CHAI_DATA_DIR unset")

local tmp = T.tmpdir()
local m = chai.opt.create({vocab_size = 50272, hidden_size = 32, num_hidden_layers = 2,
                           num_attention_heads = 4, ffn_dim = 64, max_position_embeddings = 80,
                           num_labels = 2, init_std = 0.2}, {seed = 3})
m:save(tmp .. "/model")
m:free()

-- Dealt in this order (the baseline to rank 1): rank 1 runs chai_base and chai_kd, rank 2
-- chai_target_kd, which the memory criterion chooses whatever the timings (the same weight and KV
-- bytes as the other clustered ones, the highest accuracy), so rank 1 builds it again for best/.
local OPTS = ("--model '%s/model' --quick --seed 2 --configs chai_base,chai_target_kd,chai_kd "
              .. "--criterion memory"):format(tmp)
-- Runs the search (under mpirun -n 2 when ranks == 2); returns its output, exit status, seconds.
-- Each run's folder has a parent of its own, so that no run takes another's results as earlier
-- searches beside it.
local function search(ranks, args, env)
  local launcher = ranks == 2 and ("'%s' -n 2 --oversubscribe "):format(mpiexec) or ""
  local t0 = chai.bench.now()
  local p = io.popen(("cd '%s' && %s CHAI_DATA_DIR='%s' timeout 300 %s'%s' script experiments/search.lua %s 2>&1; echo \"exit=$?\""):format(
    tmp, env or "", data, launcher, chai_bin, args))
  local text = p:read("a")
  p:close()
  return text, tonumber(text:match("exit=(%d+)%s*$")), chai.bench.now() - t0
end
local function results(folder)
  local out = {}
  for line in io.lines(folder .. "/results.jsonl") do out[#out + 1] = json.decode(line) end
  return out
end
local function by_name(list)
  local out = {}
  for _, r in ipairs(list) do out[r.name] = r end
  return out
end
local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
local NAMES = {"baseline", "chai_base", "chai_kd", "chai_target_kd"}

-- One process, then two ranks.
local single = tmp .. "/one/search"
local text, code, s1 = search(1, OPTS .. (" --out '%s'"):format(single))
T.eq(code, 0, "the search in one process: " .. text)
local want = by_name(results(single))
local dist = tmp .. "/two/search"
local s2
text, code, s2 = search(2, OPTS .. (" --out '%s'"):format(dist))
T.eq(code, 0, "the search on 2 ranks: " .. text)
print(("one process: %.1f s, 2 ranks: %.1f s"):format(s1, s2))
local lines = results(dist)
T.eq(#lines, #NAMES, "one line per configuration")
local got, ranks = by_name(lines), {}
for _, name in ipairs(NAMES) do
  local a, b = want[name], got[name]
  T.check(a and a.status == "ok", name .. " finished in one process")
  T.check(b and b.status == "ok", name .. " finished on 2 ranks: " .. tostring(b and b.error))
  if a and b and a.metrics and b.metrics then
    T.eq(b.recipe, a.recipe, name .. ": the same recipe")
    T.eq(b.metrics.accuracy.value, a.metrics.accuracy.value, name .. ": the same accuracy")
    T.eq(b.metrics.paired.difference, a.metrics.paired.difference, name .. ": the same paired difference")
    T.eq(b.machine.ranks, 2, name .. ": the rank count in the machine")
    ranks[b.machine.rank] = (ranks[b.machine.rank] or 0) + 1
    if name ~= "baseline" then
      T.eq(b.rank_baseline and b.rank_baseline.rank, b.machine.rank, name .. ": ratios against its own rank's baseline")
    end
  end
end
T.eq(got.baseline and got.baseline.machine.rank, 1, "the baseline runs on rank 1")
T.check(ranks[1] and ranks[2], "both ranks ran configurations")
local meta = json.decode(T.read_bytes(dist .. "/meta.json"))
T.eq(meta.ranks, 2, "meta.json: 2 ranks")
T.check(exists(dist .. "/report.html") and exists(dist .. "/best/search.json"), "report.html and best/")
T.eq(json.decode(T.read_bytes(single .. "/best/search.json")).name, "chai_target_kd", "one process chose chai_target_kd")
T.eq(json.decode(T.read_bytes(dist .. "/best/search.json")).name, "chai_target_kd", "2 ranks chose it too")
T.eq(got.chai_target_kd and got.chai_target_kd.machine.rank, 2, "rank 2 measured it")
local best = chai.opt.load(dist .. "/best")
T.eq(best:heads().mode, "static", "best/ (built again on rank 1) is clustered as it was measured")
best:free()
T.check(not exists(dist .. "/results.rank2.jsonl"), "rank 2's own copy removed after the gather")
T.check(exists(dist .. "/search.rank2.log"), "rank 2's lines in its log")
local done = 0
for line in io.lines(dist .. "/progress.jsonl") do
  if json.decode(line).event == "done" then done = done + 1 end
end
T.eq(done, 1, "progress.jsonl written by rank 1 alone")
T.check(select(2, text:gsub("## Results:", "")) == 1, "the tables printed once")

-- A configuration that fails on rank 2: reported, and the others finish.
local failed = tmp .. "/fail/search"
text, code = search(2, OPTS .. (" --out '%s'"):format(failed), "CHAI_SEARCH_TEST_FAIL=chai_target_kd")
T.eq(code, 0, "a failed configuration does not fail the run: " .. text)
T.check(text:find("(rank 2 of 2): chai_target_kd: failed: CHAI_SEARCH_TEST_FAIL", 1, true), "rank 2 says so: " .. text)
got = by_name(results(failed))
local f = got.chai_target_kd
T.check(f and f.status == "failed" and f.machine.rank == 2 and f.error:find("test hook", 1, true),
        "chai_target_kd: failed on rank 2, with the error")
for _, name in ipairs({"baseline", "chai_base", "chai_kd"}) do
  T.check(got[name] and got[name].status == "ok" and got[name].metrics.accuracy.value == want[name].metrics.accuracy.value,
          name .. ": finished, with the accuracy of one process")
end
T.check(exists(failed .. "/report.html"), "the report is written")
-- --resume in one process (another rank count): only the failed one runs.
text, code = search(1, ("--resume '%s'"):format(failed))
T.eq(code, 0, "resume in one process: " .. text)
T.check(text:find("3 of 4 configurations already finished", 1, true), "three were finished: " .. text)
local after = results(failed)
T.eq(#after, 5, "one line added")
T.check(after[5].name == "chai_target_kd" and after[5].status == "ok"
        and after[5].metrics.accuracy.value == want.chai_target_kd.metrics.accuracy.value,
        "chai_target_kd now finished, as in one process")
T.eq(json.decode(T.read_bytes(failed .. "/best/search.json")).name, "chai_target_kd", "and chosen")

-- A rank that cannot set up (its data folder is missing; MPMD: each rank its own environment):
-- its configurations are reported as failed with the reason, rank 1's finish.
local lost = tmp .. "/lost/search"
local cmd = ("script experiments/search.lua %s --out '%s'"):format(OPTS, lost)
local p = io.popen(("cd '%s' && timeout 300 '%s' -n 1 -x CHAI_DATA_DIR='%s' '%s' %s : -n 1 -x CHAI_DATA_DIR='%s/none' '%s' %s 2>&1; echo \"exit=$?\""):format(
  tmp, mpiexec, data, chai_bin, cmd, tmp, chai_bin, cmd))
text = p:read("a")
p:close()
T.eq(tonumber(text:match("exit=(%d+)%s*$")), 0, "a rank that cannot set up does not fail the run: " .. text)
got = by_name(results(lost))
T.check(got.chai_target_kd and got.chai_target_kd.status == "failed"
        and got.chai_target_kd.error:find("^rank 2 could not set up: ") and got.chai_target_kd.error:find("tokenizer", 1, true),
        "rank 2's configuration failed, saying why: " .. tostring(got.chai_target_kd and got.chai_target_kd.error))
for _, name in ipairs({"baseline", "chai_base", "chai_kd"}) do
  T.check(got[name] and got[name].status == "ok", name .. " finished on rank 1")
end

-- A run that ended before the gather: rank 2's own file holds its configuration, and a 2-rank
-- --resume takes it instead of running it again.
local cut = tmp .. "/cut/search"
os.execute(("mkdir -p '%s' && cp -r '%s/.' '%s'"):format(cut, dist, cut))
local keep, moved = {}, {}
for _, r in ipairs(results(dist)) do
  if r.machine.rank == 2 then moved[#moved + 1] = json.encode(r) else keep[#keep + 1] = json.encode(r) end
end
T.check(#moved > 0, "rank 2 ran something")
T.write_bytes(cut .. "/results.jsonl", table.concat(keep, "\n") .. "\n")
T.write_bytes(cut .. "/results.rank2.jsonl", table.concat(moved, "\n") .. "\n")
text, code = search(2, ("--resume '%s'"):format(cut))
T.eq(code, 0, "resume on 2 ranks: " .. text)
T.check(text:find(("%d finished configurations taken from the ranks' files"):format(#moved), 1, true), "taken: " .. text)
T.check(text:find("4 of 4 configurations already finished", 1, true), "nothing left to run: " .. text)
T.eq(#results(cut), #NAMES, "every configuration once")
T.check(not exists(cut .. "/results.rank2.jsonl"), "the rank's file is gone")
T.finish()
