-- Zero-shot evaluation, scored as lm-evaluation-harness scores multiple choice.
--   chai script experiments/zeroshot.lua --model facebook/opt-125m --task piqa
-- Options:
--   --model M       a model folder or a Hub id (default facebook/opt-125m)
--   --tokenizer T   a tokenizer folder or Hub id (default: the model's)
--   --task T        piqa, rte, sst2 or all (default piqa)
--   --limit N       score only the first N items
--   --batch-size N  items per batch (default 8)
--   --bos           prepend </s> as harness v0.4.9.2+ does (default: off, as the 2023 OPT tables)
--   --dtype D       f32 (default), f16 or bf16 weights
--   --threads N     threads (default: all cores)
--   --out FILE      also write the metrics as JSON
-- Published figures to compare with (harness, 0-shot, no BOS): OPT-125m PIQA acc 63.00 ± 1.13,
-- acc_norm 62.02; OPT-350m 64.36 / 64.74; OPT-1.3b 71.71 / 72.47.
local chai = require "chai"

local usage = "usage: chai script experiments/zeroshot.lua [--model M] [--tokenizer T] [--task piqa|rte|sst2|all] " ..
              "[--limit N] [--batch-size N] [--bos] [--dtype D] [--threads N] [--out FILE]"
local opts = {model = "facebook/opt-125m", task = "piqa", batch_size = 8}
local i = 1
local function value(name)
  local v = arg[i + 1]
  if v == nil then io.stderr:write("zeroshot.lua: " .. name .. " needs a value\n" .. usage .. "\n"); os.exit(2) end
  i = i + 1
  return v
end
local function integer(name)
  local v = math.tointeger(tonumber(value(name)))
  if not v or v < 1 then io.stderr:write("zeroshot.lua: " .. name .. " needs a positive integer\n"); os.exit(2) end
  return v
end
while i <= #arg do
  local a = arg[i]
  if a == "--model" then opts.model = value(a)
  elseif a == "--tokenizer" then opts.tokenizer = value(a)
  elseif a == "--task" then opts.task = value(a)
  elseif a == "--limit" then opts.limit = integer(a)
  elseif a == "--batch-size" then opts.batch_size = integer(a)
  elseif a == "--bos" then opts.bos = true
  elseif a == "--dtype" then opts.dtype = value(a)
  elseif a == "--threads" then opts.threads = integer(a)
  elseif a == "--out" then opts.out = value(a)
  elseif a == "-h" or a == "--help" then print(usage); os.exit(0)
  else io.stderr:write("zeroshot.lua: unknown option '" .. a .. "'\n" .. usage .. "\n"); os.exit(2) end
  i = i + 1
end
local tasks = opts.task == "all" and {"piqa", "rte", "sst2"} or {opts.task}
for _, t in ipairs(tasks) do
  if not chai.eval.templates[t] then
    io.stderr:write("zeroshot.lua: unknown task '" .. t .. "' (piqa, rte, sst2 or all)\n"); os.exit(2)
  end
end
if opts.threads then chai.threads(opts.threads) end

local model = chai.opt.load(opts.model, {dtype = opts.dtype})
local tok = chai.tokenizer.load(opts.tokenizer or opts.model)
local results = {}
for _, task in ipairs(tasks) do
  local r = chai.eval.zeroshot(model, tok, task, {limit = opts.limit, batch_size = opts.batch_size,
                                                  add_bos = opts.bos or false})
  results[task] = r
  local line = string.format("%-5s n=%-5d acc %.2f ± %.2f", task, r.n, 100 * r.acc, 100 * r.acc_stderr)
  if r.acc_norm then line = line .. string.format("  acc_norm %.2f ± %.2f", 100 * r.acc_norm, 100 * r.acc_norm_stderr) end
  line = line .. string.format("  | %.1f items/s, item %.1f ms (p90 %.1f), peak RSS %.0f MB, BOS %s",
                               r.throughput_items_per_s, r.latency_ms.item_median, r.latency_ms.item_p90,
                               (r.peak_rss_bytes or 0) / 2^20, r.add_bos and "on" or "off")
  print(line)
end
if opts.out then
  local f = assert(io.open(opts.out, "w"))
  f:write(chai.json.encode({model = opts.model, results = results}, {indent = true}), "\n")
  f:close()
end
