-- chai.data: tasks and the tokenizer from a data folder (the slices in tests/fixtures/data, as
-- their manifest records them) and from the Hub's cache, the one error naming both ways when
-- neither serves, readers, seeded shuffling, batching and length buckets, and the errors of bad
-- input. Whole splits (row counts of the full data) are tests/lua/test_data_splits.lua.
local data = require "chai.data"
local json = require("chai.core").json

local passed, failed = 0, 0
local function check(cond, what)
  if cond then passed = passed + 1 else failed = failed + 1; io.stderr:write("FAILED: " .. what .. "\n") end
end
local function check_error(fn, needle, what)
  local ok, err = pcall(fn)
  check(not ok and tostring(err):find(needle, 1, true) ~= nil, what .. " (got: " .. tostring(err) .. ")")
end

local function balance(rows)
  local c = {[0] = 0, [1] = 0}
  for _, r in ipairs(rows) do c[r.label] = c[r.label] + 1 end
  return c[0], c[1]
end

-- tasks from the data folder in the repository: the rows its manifest lists
local fixtures = assert(os.getenv("CHAI_TEST_FIXTURES"), "CHAI_TEST_FIXTURES unset") .. "/data"
local mf = assert(io.open(fixtures .. "/manifest.json", "rb"))
local manifest = json.decode(mf:read("a"))
mf:close()
local D = {data_dir = fixtures}
local expect = {
  {"sst2", "validation", "sst2/glue_dev.tsv", 22, 18}, {"sst2", "train", "sst2/glue_train.tsv", 21, 19},
  {"rte", "validation", "rte/dev.tsv", 20, 20}, {"rte", "train", "rte/train.tsv", 21, 19},
  {"piqa", "validation", "piqa/valid.jsonl", 18, 22},
}
for _, e in ipairs(expect) do
  local t = data.task(e[1], e[2], D)
  local entry = manifest.files[e[3]]
  local n0, n1 = balance(t.rows)
  check(entry ~= nil and #t.rows == 40 and #entry.rows == 40, e[3] .. ": 40 rows, each in the manifest")
  check(n0 == e[4] and n1 == e[5], e[1] .. " " .. e[2] .. " label balance " .. n0 .. "/" .. n1)
  check(t.source == fixtures .. "/" .. e[3] and t.split == e[2], e[1] .. " " .. e[2] .. " source " .. t.source)
  check(entry and entry.licence and entry.upstream.repository and entry.upstream.commit and
        entry.source.sha256 and entry.rows[40].source_line == (e[3]:match("jsonl$") and 40 or 41),
        e[3] .. ": origin, licence and source lines recorded")
end
for _, name in ipairs({"opt-tokenizer/vocab.json", "opt-tokenizer/merges.txt"}) do
  local entry = manifest.files[name]
  check(entry and entry.licence:find("MIT", 1, true) and entry.source.sha256, name .. ": origin and licence")
end
local sst2 = data.task("sst2", "validation", D)
check(sst2.rows[1].sentence == "it 's a charming and often affecting journey . ", "sst2 sentences get GLUE's trailing space back")
check(sst2.num_labels == 2 and sst2.rows[1].label == 1, "sst2 fields")
local rte = data.task("rte", nil, D)
check(rte.split == "validation" and rte.rows[1].sentence2 == "Christopher Reeve had an accident." and
      rte.rows[1].label == 1, "rte first pair")
local piqa = data.task("piqa", "validation", D)
check(type(piqa.rows[1].goal) == "string" and piqa.rows[1].sol1 and piqa.rows[1].sol2, "piqa fields")
check(data.task("sst2").source == sst2.source, "CHAI_DATA_DIR is the default data folder (the tests set it)")
check(data.dir() == os.getenv("CHAI_DATA_DIR") and data.dir({data_dir = "/x"}) == "/x", "data.dir")
check_error(function() data.task("mnli") end, "unknown task 'mnli'", "unknown task")
check_error(function() data.task("sst2", "validation", {datadir = "/x"}) end, "unknown option 'datadir'",
            "unknown task option")

-- neither the data folder nor the Hub: one error naming both ways
local dir = os.tmpname(); os.remove(dir); os.execute("mkdir -p " .. dir)
local none = {data_dir = dir .. "/none", offline = true, cache_dir = dir .. "/hub"}
check_error(function() data.task("rte", "train", none) end,
            "no rte train split: the data folder " .. dir .. "/none has no rte/train.tsv, and the Hub's rows " ..
            "API (nyu-mll/glue, config rte) failed: nyu-mll/glue rte/train is not cached and HF_HUB_OFFLINE=1",
            "task: neither source")
check_error(function() data.task("rte", "train", none) end,
            "To fix: set CHAI_DATA_DIR to a data folder holding rte/train.tsv, or run once with network access",
            "task: how to fix")
check_error(function() data.task("piqa", "train", none) end,
            "the data folder layout has no file for piqa train", "task: a split only the Hub has")
check_error(function() data.tokenizer(none) end,
            "no OPT tokenizer: the data folder " .. dir .. "/none has no opt-tokenizer/vocab.json, and the Hub " ..
            "(facebook/opt-125m) failed: offline mode", "tokenizer: neither source")
check_error(function() data.tokenizer(none) end,
            "or fetch them once with network access: chai download facebook/opt-125m vocab.json merges.txt",
            "tokenizer: how to fix")
check_error(function() data.tokenizer({add_bos = 1}) end, "option add_bos must be a boolean", "tokenizer add_bos")
check_error(function() data.tokenizer({bos = true}) end, "unknown option 'bos'", "tokenizer option")

-- the tokenizer: from the data folder, else from the Hub's cache (laid out as huggingface_hub
-- does, with OPT's tokenizer_config.json, which turns add_bos on: chai.data keeps it off)
local tok, from = data.tokenizer(D)
check(from == fixtures .. "/opt-tokenizer" and tok.add_bos == false, "tokenizer from the data folder")
check(#tok:encode("Hello world") == 2 and tok:encode("Hello world")[1] == 31414, "tokenizer encodes")
local commit = string.rep("c0", 20)
local repo = dir .. "/hub/models--facebook--opt-125m"
os.execute(string.format("mkdir -p '%s/refs' '%s/snapshots/%s'", repo, repo, commit))
local function write(path, text)
  local f = assert(io.open(path, "wb")); f:write(text); f:close()
  return path
end
write(repo .. "/refs/main", commit)
local snap = repo .. "/snapshots/" .. commit
os.execute(string.format("ln -s '%s/opt-tokenizer/vocab.json' '%s/vocab.json' && ln -s '%s/opt-tokenizer/merges.txt' '%s/merges.txt'",
                         fixtures, snap, fixtures, snap))
write(snap .. "/tokenizer_config.json", '{"add_bos_token": true}')
write(snap .. "/special_tokens_map.json", '{}')
local htok, hfrom = data.tokenizer(none)
check(hfrom == "hub:facebook/opt-125m" and htok.add_bos == false, "tokenizer from the Hub's cache, add_bos off")
check(table.concat(htok:encode("Hello world"), ",") == "31414,232", "the Hub's tokenizer encodes alike")
none.add_bos = true
check(data.tokenizer(none).add_bos == true, "add_bos = true")
none.add_bos = nil
-- a task split from the Hub's cache when the data folder lacks it
local cached = dir .. "/hub/datasets--nyu-mll--glue/chai-rows"
os.execute(string.format("mkdir -p '%s/refs' '%s/abc123/rte'", cached, cached))
write(cached .. "/refs/main", "abc123\n")
data.write_jsonl(cached .. "/abc123/rte/train.jsonl", {{sentence1 = "a", sentence2 = "b", label = 0, idx = 0}})
local hub_rte = data.task("rte", "train", none)
check(#hub_rte.rows == 1 and hub_rte.rows[1].idx == nil and hub_rte.rows[1].sentence2 == "b" and
      hub_rte.source == "hub:nyu-mll/glue/rte" and hub_rte.revision == "abc123", "task from the Hub's cache")

-- readers on files written here
local function put(name, text) return write(dir .. "/" .. name, text) end
local rows = data.read_tsv(put("a.tsv", 'text\tlabel\n"quoted" stays\t1\nb\t0\n'))
check(#rows == 2 and rows[1].text == '"quoted" stays' and rows[2].label == "0", "tsv has no quoting")
check_error(function() data.read_tsv(put("bad.tsv", "a\tb\n1\t2\t3\n")) end, "line 2 has 3 fields", "tsv field count")
check_error(function() data.read_tsv(dir .. "/missing.tsv") end, "missing.tsv", "missing file")
rows = data.read_csv(put("a.csv", 'a,b\n"x, y","he said ""hi"""\n"multi\nline",2\r\n'))
check(#rows == 2 and rows[1].a == "x, y" and rows[1].b == 'he said "hi"' and rows[2].a == "multi\nline", "csv quoting")
check_error(function() data.read_csv(put("bad.csv", 'a,b\n"open,1\n')) end, "never closes", "csv open quote")
check_error(function() data.read_csv(put("bad2.csv", 'a,b\n1,2,3\n')) end, "3 fields", "csv field count")
rows = data.read_jsonl(put("a.jsonl", '{"x": 1, "s": "é"}\n\n{"x": 2}\n'))
check(#rows == 2 and rows[2].x == 2 and rows[1].s == "é", "jsonl")
check_error(function() data.read_jsonl(put("bad.jsonl", '{"x": 1}\n{"x": \n')) end, "line 2", "jsonl bad line")
data.write_jsonl(dir .. "/out.jsonl", {{a = 1}, {b = "two"}})
rows = data.read_jsonl(dir .. "/out.jsonl")
check(rows[1].a == 1 and rows[2].b == "two", "jsonl round trip")

-- shuffling and batching
local list = {}
for i = 1, 100 do list[i] = i end
local s1, s2, s3 = data.shuffle(list, 1), data.shuffle(list, 1), data.shuffle(list, 2)
check(table.concat(s1, ",") == table.concat(s2, ","), "same seed, same order")
check(table.concat(s1, ",") ~= table.concat(s3, ","), "another seed, another order")
table.sort(s1)
check(table.concat(s1, ",") == table.concat(list, ","), "a shuffle is a permutation")
local b = data.batches(list, {batch_size = 32})
check(#b == 4 and #b[4] == 4 and b[1][1] == 1, "plain batches")
check(#data.batches(list, {batch_size = 32, drop_last = true}) == 3, "drop_last")
local words = {}
for i = 1, 200 do words[i] = string.rep("x", (i * 37) % 50 + 1) end
local lb = data.batches(words, {batch_size = 8, shuffle = true, seed = 3, length = function(w) return #w end})
local spread, total = 0, 0
for _, batch in ipairs(lb) do
  local lo, hi = math.huge, 0
  for _, w in ipairs(batch) do lo = math.min(lo, #w); hi = math.max(hi, #w); total = total + 1 end
  spread = spread + (hi - lo)
end
check(total == 200, "length buckets keep every row")
check(spread / #lb < 5, "length buckets group similar lengths (mean spread " .. spread / #lb .. ")")
check_error(function() data.batches(list, {batch_sise = 3}) end, "unknown option 'batch_sise'", "unknown option")
check_error(function() data.batches(list, {batch_size = 0}) end, "batch_size", "bad batch size")

-- the rows API offline: a miss names what is missing; a cached split is read back
check_error(function() data.rows_api("nyu-mll/glue", "sst2", "validation", {offline = true, cache_dir = dir}) end,
            "not cached and HF_HUB_OFFLINE=1", "offline miss")
local cached = dir .. "/datasets--nyu-mll--glue/chai-rows/abc123/sst2"
os.execute("mkdir -p " .. cached)
data.write_jsonl(cached .. "/validation.jsonl", {{sentence = "fine ", label = 1}})
rows = data.rows_api("nyu-mll/glue", "sst2", "validation", {offline = true, cache_dir = dir, revision = "abc123"})
check(#rows == 1 and rows[1].sentence == "fine ", "offline hit")

-- docs/data.md's blocks run (CHAI_DATA_DIR is the slices here)
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = here .. "?.lua;" .. package.path
local T = require "helper"
T.run_doc_blocks("data.md", 2)
check(T.failed == 0 and T.passed >= 4, "docs/data.md's lua blocks run")
-- task_info: what a task offers, without loading it
local info = data.task_info("sst2", {data_dir = dir})
check(info and info.num_labels == 2 and info.fields[1] == "sentence", "task_info: fields")
check(#info.splits == 2 and info.splits[1].name == "train" and info.splits[2].name == "validation",
      "task_info: sst2 splits, sorted")
check(info.splits[2]["local"] == false, "task_info: a split not in the data folder is not local")
os.execute("mkdir -p " .. dir .. "/piqa && echo '{}' > " .. dir .. "/piqa/valid.jsonl")
local piqa = data.task_info("piqa", {data_dir = dir})
check(#piqa.splits == 1 and piqa.splits[1].name == "validation" and piqa.splits[1]["local"] == true,
      "task_info: piqa's one split, found in the data folder")
check(data.task_info("mnli") == nil, "task_info: unknown task")

os.execute("rm -rf " .. dir)
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
