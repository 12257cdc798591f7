-- scripts/experiments/search.lua as a user runs it: bad options and bad models are one line on
-- stderr (no traceback) with status 2 (options) or 1 (the rest), and nothing is left half-made.
local T = require "helper"
local chai_bin = assert(os.getenv("CHAI_BUILD_DIR"), "CHAI_BUILD_DIR unset") .. "/chai"
local tmp = T.tmpdir()

local function run(args)
  local p = io.popen(("cd '%s' && '%s' script experiments/search.lua %s 2>&1; echo \"exit=$?\""):format(tmp, chai_bin, args))
  local text = p:read("a")
  p:close()
  local code = tonumber(text:match("exit=(%d+)%s*$"))
  return text:gsub("exit=%d+%s*$", ""), code
end

local function one_line(text, what)
  T.check(select(2, text:gsub("\n", "")) == 1 and not text:find("traceback", 1, true), what .. ": one line: " .. text)
end

for _, case in ipairs({
  {"--frobnicate", "unknown option '--frobnicate'"},
  {"--criterion fastest", "--criterion 'fastest': not a criterion"},
  {"--configs chai_quant,chai_zip", "unknown step 'zip'"},
  {"--grid quant.low=0.2 --configs chai_kd", "applies to no configuration"},
  {"--task rte", "--task rte needs --model"},
}) do
  local text, code = run(case[1])
  T.eq(code, 2, "exit 2 for " .. case[1])
  T.check(text:find(case[2], 1, true) ~= nil, ("%s: names it: %s"):format(case[1], text))
  one_line(text, case[1])
end

-- Models that cannot be searched: status 1, the value named.
os.execute(("mkdir -p '%s/empty' '%s/bert'"):format(tmp, tmp))
T.write_bytes(tmp .. "/bert/config.json", '{"model_type": "bert", "hidden_size": 8}')
for _, case in ipairs({
  {"--model " .. tmp .. "/missing/model", "no such folder"},
  {"--model " .. tmp .. "/empty", "has no config.json, so it is not a model folder"},
  {"--model " .. tmp .. "/bert", "not an OPT model (config.json says model_type 'bert')"},
}) do
  local text, code = run(case[1] .. " --out " .. tmp .. "/out-" .. tostring(math.random(1e9)))
  T.eq(code, 1, "exit 1 for " .. case[1])
  T.check(text:find(case[2], 1, true) ~= nil, ("%s: says why: %s"):format(case[1], text))
  one_line(text, case[1])
end
local text, code = run("--help")
T.check(code == 0 and text:find("usage: chai script experiments/search.lua", 1, true), "--help")
T.finish()
