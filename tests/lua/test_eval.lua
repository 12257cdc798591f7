-- chai.eval: zero-shot scoring against a PyTorch oracle (tests/fixtures/make_eval_fixture.py) on a
-- tiny random OPT with the real vocabulary, the harness's _encode_pair rule, batching invariance,
-- classification evaluation, metrics, and bad calls.
local chai = require "chai"
local json = require("chai.core").json

local passed, failed = 0, 0
local function check(cond, what)
  if cond then passed = passed + 1 else failed = failed + 1; io.stderr:write("FAILED: " .. what .. "\n") end
end
local function check_error(fn, needle, what)
  local ok, err = pcall(fn)
  check(not ok and tostring(err):find(needle, 1, true) ~= nil, what .. " (got: " .. tostring(err) .. ")")
end

local fixtures = assert(os.getenv("CHAI_TEST_FIXTURES"), "CHAI_TEST_FIXTURES unset")
local data_dir = fixtures .. "/data" -- the slices in the repository
local m = chai.opt.load(fixtures .. "/eval/model")
local tok = chai.tokenizer.load(data_dir .. "/opt-tokenizer")
local f = assert(io.open(fixtures .. "/eval/expected.json"))
local expected = json.decode(f:read("a")).items
f:close()

-- The same documents the fixture scored, in the same order (first 6 of each task).
local docs = {}
for _, task in ipairs({"sst2", "rte", "piqa"}) do
  local rows = chai.data.task(task, "validation", {data_dir = data_dir}).rows
  for i = 1, 6 do docs[#docs + 1] = {task = task, doc = rows[i]} end
end

local function same_ids(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local items = {}
for n, e in ipairs(expected) do
  local d = docs[n]
  local tpl = chai.eval.templates[d.task]
  local context, choices = tpl.text(d.doc), tpl.choices(d.doc)
  check(e.task == d.task and e.label == tpl.target(d.doc), "item " .. n .. " is the fixture's document")
  local item = {conts = {}}
  for j, choice in ipairs(choices) do
    local ctx, cont = chai.eval.encode_pair(tok, context, " " .. choice)
    check(same_ids(ctx, e.ctx), "item " .. n .. ": context ids as the harness forms them")
    check(same_ids(cont, e.choices[j].cont), "item " .. n .. " choice " .. j .. ": continuation ids")
    item.ctx = ctx
    item.conts[j] = cont
  end
  items[n] = item
end

-- All 18 items in one batch, then one by one: the same log-likelihoods, within the oracle's bound.
local batched = chai.eval.score_items(m, items)
for n, e in ipairs(expected) do
  local single = chai.eval.score_items(m, {items[n]})
  local best_chai, best_ref, arg_chai, arg_ref = -math.huge, -math.huge, 0, 0
  for j, c in ipairs(e.choices) do
    local got = batched[n][j].ll
    local tol = math.max(1e-4, 2e-6 * math.abs(c.ll))
    check(math.abs(got - c.ll) <= tol, string.format("item %d choice %d: ll %.6f vs %.6f", n, j, got, c.ll))
    check(math.abs(single[1][j].ll - got) <= 1e-4, "item " .. n .. ": batching changes nothing")
    check(batched[n][j].greedy == c.greedy, "item " .. n .. " choice " .. j .. ": greedy flag")
    if got > best_chai then best_chai, arg_chai = got, j end
    if c.ll > best_ref then best_ref, arg_ref = c.ll, j end
  end
  check(arg_chai == arg_ref, "item " .. n .. ": same argmax")
end

-- loglikelihood() is the one-request form.
local ll, greedy = chai.eval.loglikelihood(m, tok, chai.eval.templates.rte.text(docs[7].doc), " True")
check(math.abs(ll - expected[7].choices[1].ll) <= 1e-4 and greedy == expected[7].choices[1].greedy, "loglikelihood")

-- _encode_pair moves the context's trailing whitespace into the continuation.
local c1, k1 = chai.eval.encode_pair(tok, "Answer: ", "yes")
local c2, k2 = chai.eval.encode_pair(tok, "Answer:", " yes")
check(same_ids(c1, c2) and same_ids(k1, k2), "trailing whitespace moves into the continuation")
local cb = chai.eval.encode_pair(tok, "Answer:", " yes", {add_bos = true})
check(cb[1] == 2 and #cb == #c2 + 1, "add_bos prepends </s>")

-- zeroshot: metrics, batch-size invariance, JSON output.
local out = os.tmpname()
local r8 = chai.eval.zeroshot(m, tok, "piqa", {limit = 12, batch_size = 4, out = out, data_dir = data_dir})
local r1 = chai.eval.zeroshot(m, tok, "piqa", {limit = 12, batch_size = 1, data_dir = data_dir})
check(r8.n == 12 and r8.acc == r1.acc and r8.acc_norm == r1.acc_norm, "batch size changes no score")
check(r8.acc >= 0 and r8.acc <= 1 and r8.acc_stderr > 0, "acc and its standard error")
local lat = r8.latency_ms
check(lat.item_median > 0 and lat.item_p90 >= lat.item_median and lat.batch_p90 >= lat.batch_median, "latencies")
check(r8.throughput_items_per_s > 0 and r8.peak_rss_bytes > 0 and r8.model_bytes > 0, "throughput, RSS, model bytes")
check(r8.add_bos == false, "no BOS by default")
local jf = assert(io.open(out)); local written = json.decode(jf:read("a")); jf:close(); os.remove(out)
check(written.task == "piqa" and written.n == 12 and written.acc == r8.acc, "metrics written as JSON")
local sst = chai.eval.zeroshot(m, tok, "sst2", {limit = 6, data_dir = data_dir})
check(sst.acc_norm == nil and sst.n == 6, "sst2 reports acc only")

-- classification heads use the same metrics (a random score head: only the plumbing is checked).
local cls = chai.eval.classify(m, tok, "sst2", {limit = 10, batch_size = 4, data_dir = data_dir})
check(cls.n == 10 and cls.acc >= 0 and cls.latency_ms.item_median > 0 and cls.head == "classify", "classify")

-- bad calls
check_error(function() chai.eval.zeroshot(m, tok, "mnli") end, "unknown task 'mnli'", "unknown task")
check_error(function() chai.eval.zeroshot(m, tok, "piqa", {limt = 3}) end, "unknown option 'limt'", "unknown option")
check_error(function() chai.eval.zeroshot(m, tok, "piqa", {batch_size = 0}) end, "batch_size", "bad batch size")
check_error(function() chai.eval.classify(m, tok, "piqa") end, "unknown task 'piqa'", "classify needs a label task")
check_error(function() m:score_continuations({{5, 6}}, {{{}}}) end, "has 0 tokens", "empty continuation")
check_error(function() m:score_continuations({{5, 99999}}, {{{7}}}) end, "outside the vocabulary", "bad id")
check_error(function() m:score_continuations({{5}}, {}) end, "1 contexts but 0", "mismatched lists")
check_error(function() chai.eval.loglikelihood(m, tok, "", "") end, "no tokens", "empty request")

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
