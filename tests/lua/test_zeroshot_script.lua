-- scripts/experiments/zeroshot.lua end to end on the eval fixture model: output lines, JSON, exit
-- codes for bad usage.
local json = require("chai.core").json
local passed, failed = 0, 0
local function check(cond, what)
  if cond then passed = passed + 1 else failed = failed + 1; io.stderr:write("FAILED: " .. what .. "\n") end
end
local chai_bin = assert(os.getenv("CHAI_BUILD_DIR"), "CHAI_BUILD_DIR unset") .. "/chai"
local fixtures = os.getenv("CHAI_TEST_FIXTURES")
local data = os.getenv("CHAI_DATA_DIR")
local out = os.tmpname()
local function run(args)
  local p = io.popen(string.format("'%s' script experiments/zeroshot.lua %s 2>&1; echo \"exit=$?\"", chai_bin, args))
  local text = p:read("a"); p:close()
  return text, tonumber(text:match("exit=(%d+)"))
end
local text, code = run(string.format("--model '%s/eval/model' --tokenizer '%s/opt-tokenizer' --task all --limit 4 --batch-size 2 --out '%s'",
                                     fixtures, data, out))
check(code == 0, "runs: " .. text)
check(text:find("piqa  n=4 ", 1, true) and text:find("acc_norm", 1, true), "piqa line")
check(text:find("rte   n=4 ", 1, true) and text:find("sst2  n=4 ", 1, true), "rte and sst2 lines")
local f = assert(io.open(out)); local res = json.decode(f:read("a")); f:close(); os.remove(out)
check(res.results.piqa.n == 4 and res.results.rte.acc ~= nil and res.results.sst2.add_bos == false, "JSON results")
text, code = run("--task mnli")
check(code == 2 and text:find("unknown task 'mnli'", 1, true), "unknown task exits 2")
text, code = run("--frobnicate")
check(code == 2 and text:find("unknown option '--frobnicate'", 1, true), "unknown option exits 2")
text, code = run("--limit zero")
check(code == 2 and text:find("positive integer", 1, true), "bad --limit exits 2")
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
