-- chai.data: readers, tasks on ../shared/data (row counts and label balance as its README states),
-- seeded shuffling, batching and length buckets, and the errors of bad input.
local data = require "chai.data"

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

-- tasks from the local mirror
assert(os.getenv("CHAI_DATA_DIR"), "CHAI_DATA_DIR must point at ../shared/data")
local expect = {
  {"sst2", "validation", 872, 428, 444}, {"sst2", "train", 67349, 29780, 37569},
  {"rte", "validation", 277, 146, 131}, {"rte", "train", 2490, 1249, 1241},
  {"piqa", "validation", 1838, 910, 928},
}
for _, e in ipairs(expect) do
  local t = data.task(e[1], e[2])
  local n0, n1 = balance(t.rows)
  check(#t.rows == e[3], e[1] .. " " .. e[2] .. " has " .. #t.rows .. " rows")
  check(n0 == e[4] and n1 == e[5], e[1] .. " " .. e[2] .. " label balance " .. n0 .. "/" .. n1)
end
local sst2 = data.task("sst2", "validation")
check(sst2.rows[1].sentence:sub(-1) == " ", "sst2 sentences get GLUE's trailing space back")
check(sst2.num_labels == 2 and sst2.source:find("glue_dev.tsv", 1, true), "sst2 source")
local rte = data.task("rte")
check(rte.rows[1].sentence2 == "Christopher Reeve had an accident." and rte.rows[1].label == 1, "rte first pair")
local piqa = data.task("piqa")
check(type(piqa.rows[1].goal) == "string" and piqa.rows[1].sol1 and piqa.rows[1].sol2, "piqa fields")
check_error(function() data.task("mnli") end, "unknown task 'mnli'", "unknown task")

-- readers on files written here
local dir = os.tmpname(); os.remove(dir); os.execute("mkdir -p " .. dir)
local function write(name, text)
  local f = assert(io.open(dir .. "/" .. name, "wb")); f:write(text); f:close()
  return dir .. "/" .. name
end
local rows = data.read_tsv(write("a.tsv", 'text\tlabel\n"quoted" stays\t1\nb\t0\n'))
check(#rows == 2 and rows[1].text == '"quoted" stays' and rows[2].label == "0", "tsv has no quoting")
check_error(function() data.read_tsv(write("bad.tsv", "a\tb\n1\t2\t3\n")) end, "line 2 has 3 fields", "tsv field count")
check_error(function() data.read_tsv(dir .. "/missing.tsv") end, "missing.tsv", "missing file")
rows = data.read_csv(write("a.csv", 'a,b\n"x, y","he said ""hi"""\n"multi\nline",2\r\n'))
check(#rows == 2 and rows[1].a == "x, y" and rows[1].b == 'he said "hi"' and rows[2].a == "multi\nline", "csv quoting")
check_error(function() data.read_csv(write("bad.csv", 'a,b\n"open,1\n')) end, "never closes", "csv open quote")
check_error(function() data.read_csv(write("bad2.csv", 'a,b\n1,2,3\n')) end, "3 fields", "csv field count")
rows = data.read_jsonl(write("a.jsonl", '{"x": 1, "s": "é"}\n\n{"x": 2}\n'))
check(#rows == 2 and rows[2].x == 2 and rows[1].s == "é", "jsonl")
check_error(function() data.read_jsonl(write("bad.jsonl", '{"x": 1}\n{"x": \n')) end, "line 2", "jsonl bad line")
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
