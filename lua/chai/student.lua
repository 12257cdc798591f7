-- chai.student: chai's own SST-2 classifiers, trained from scratch (no pretrained weights can be
-- downloaded where chai is built): their architectures, the training recipe, and the default
-- model of experiments/search.lua, trained on first use and cached under chai.train.models_dir().
-- experiments/train_sst2.lua runs the same recipe over seeds, with a teacher and distillation.
--
--   local dir = chai.student.ensure()            -- models_dir/sst2-opt-student (trained if missing)
--   local tok, train_rows, dev_rows = chai.student.data({quick = true})
--   local m, rec = chai.student.train({name = "x", seed = 1, train = train_rows, dev = dev_rows})
local core = require "chai.core"
local json = core.json

local M = {}

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = type(v) == "table" and copy(v) or v end
  return out
end

--- The student: 4 layers × 256, 8 heads of 32 (measured better than 4 heads here, and finer steps
--- for head clustering), the OPT vocabulary, a 2-label score head.
M.config = {vocab_size = 50272, hidden_size = 256, num_hidden_layers = 4, num_attention_heads = 8,
            ffn_dim = 1024, max_position_embeddings = 128, num_labels = 2,
            id2label = {["0"] = "negative", ["1"] = "positive"}, init_std = 0.02}
--- A larger single model (6 × 320, 5 heads): train_sst2's teacher-large phase.
M.teacher_config = {vocab_size = 50272, hidden_size = 320, num_hidden_layers = 6,
                    num_attention_heads = 5, ffn_dim = 1280, max_position_embeddings = 128,
                    num_labels = 2, id2label = {["0"] = "negative", ["1"] = "positive"},
                    init_std = 0.02}
--- Rows are cut to this many tokens.
M.max_length = 64
--- The recipe: AdamW with a linear schedule, label smoothing, weight averaging, one epoch of GLUE
--- SST-2 train at batch 32, a time budget per run, dev evaluated every 500 steps.
M.defaults = {epochs = 1, minutes = 20, batch = 32, lr = 1e-3, wd = 0.1, label_smoothing = 0.1,
              dropout = 0, ema = 0.999, eos = false, quick_rows = 2000}
--- The default model's folder name under chai.train.models_dir(), and the --quick one's.
M.name = "sst2-opt-student"
M.quick_name = "sst2-opt-student-quick"

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- The OPT tokenizer through chai.data: the data folder ($CHAI_DATA_DIR), else the Hub; an error
--- naming both ways when neither serves.
function M.tokenizer()
  return (require("chai.data").tokenizer())
end

--- The tokenizer and the encoded GLUE SST-2 train and dev rows, through chai.data (the data folder
--- $CHAI_DATA_DIR, else the Hub; an error naming both ways when neither serves). opts: quick (the
--- first M.defaults.quick_rows train rows), limit (the first `limit` train rows), eos (end every
--- row with </s>).
function M.data(opts)
  opts = opts or {}
  local data = require "chai.data"
  local train = require "chai.train"
  local tok = M.tokenizer()
  local enc = {max_length = M.max_length, add_eos = opts.eos or false}
  local raw = data.task("sst2", "train").rows
  local keep = math.min(opts.limit or #raw, opts.quick and M.defaults.quick_rows or #raw)
  if keep < #raw then raw = {table.unpack(raw, 1, keep)} end
  local train_rows = train.encode(raw, tok, enc)
  local dev_rows = train.encode(data.task("sst2", "validation").rows, tok, enc)
  return tok, train_rows, dev_rows
end

-- sst2-results.json in a models folder: every run's record, by name.
local function results_path(dir) return dir .. "/sst2-results.json" end

--- The records of earlier runs in `dir` (chai.train.models_dir() by default), by name.
function M.load_results(dir)
  local f = io.open(results_path(dir or require("chai.train").models_dir()), "rb")
  if not f then return {} end
  local r = json.decode(f:read("a"))
  f:close()
  return r
end

--- Adds (replaces) one run's record in dir/sst2-results.json.
function M.save_result(dir, key, rec)
  local r = M.load_results(dir)
  r[key] = rec
  core.files.replace(results_path(dir), json.encode(r))
end

--- Trains one model with the recipe and saves it as dir/name. opts: name, seed, train and dev
--- (encoded rows), config [M.config], epochs, dir [models_dir], time_budget (seconds), progress,
--- teacher/T/alpha (distillation from rows' teacher logits), distributed (data-parallel over the
--- MPI ranks, chai.train's), write [true] (false: neither the model nor the record is written, for
--- the ranks other than the first), and the recipe's knobs as in M.defaults (batch, lr, wd,
--- label_smoothing, dropout, ema, quick: evaluate every 20 steps). Logs to dir/logs/<name>.jsonl,
--- checkpoints in dir/runs/<name> (a rerun resumes), records the run in dir/sst2-results.json.
--- Returns the model and the record.
function M.train(opts)
  local train = require "chai.train"
  local opt = require "chai.opt"
  local d = copy(M.defaults)
  for k, v in pairs(opts) do d[k] = v end
  local dir = d.dir or train.models_dir()
  os.execute("mkdir -p " .. sh_quote(dir .. "/logs"))
  local cfg = d.config or M.config
  local m = opt.create(cfg, {seed = d.seed})
  local run = {model = m, head = "classify", train = d.train, eval = d.dev, batch_size = d.batch,
               epochs = d.epochs, label_smoothing = d.label_smoothing, dropout = d.dropout,
               ema = d.ema > 0 and d.ema or nil, seed = d.seed,
               optimizer = {kind = "adamw", lr = d.lr, weight_decay = d.wd, schedule = "linear",
                            max_grad_norm = 1.0},
               eval_every = d.quick and 20 or 500, eval_batch_size = 128,
               log = dir .. "/logs/" .. d.name .. ".jsonl", checkpoint = dir .. "/runs/" .. d.name,
               resume = true, time_budget = d.time_budget, progress = d.progress,
               teacher = d.teacher, T = d.T, alpha = d.alpha, distributed = d.distributed}
  local res = train.run(run)
  local write = d.write ~= false
  if write then m:save(dir .. "/" .. d.name) end
  local rec = {name = d.name, seed = d.seed, accuracy = res.eval.accuracy, loss = res.eval.loss,
               steps = res.step, total_steps = res.total_steps, seconds = res.seconds,
               stopped = res.stopped, history = res.history, config = cfg,
               kd = d.teacher and {T = d.T, alpha = d.alpha} or nil, threads = core.threads(),
               ranks = d.distributed and require("chai.mpi").size() or nil}
  if write then M.save_result(dir, d.name, rec) end
  return m, rec
end

--- The folder of the default model, trained first when it is not there yet: the student of seed 1
--- (saved as sst2-opt-student-s1 and copied to sst2-opt-student, as train_sst2.lua does), or with
--- opts.quick a smoke-test student trained on M.defaults.quick_rows rows (sst2-opt-student-quick)
--- unless the full one exists. opts.log(line) hears what happens; opts.dir replaces models_dir();
--- opts.config (another architecture) and opts.rows (a cap on the train rows) serve tests.
--- Returns the folder and whether it was trained now.
function M.ensure(opts)
  opts = opts or {}
  local dir = opts.dir or require("chai.train").models_dir()
  local log = opts.log or function() end
  local full = dir .. "/" .. M.name
  if exists(full .. "/config.json") then return full, false end
  local name = opts.quick and M.quick_name or (M.name .. "-s1")
  local target = dir .. "/" .. (opts.quick and M.quick_name or M.name)
  if exists(target .. "/config.json") then return target, false end
  log(("training the default model (the SST-2 student of experiments/train_sst2.lua%s) into %s"):format(
      opts.quick and ", on " .. M.defaults.quick_rows .. " rows for --quick" or "", target))
  local _, train_rows, dev_rows = M.data({quick = opts.quick, limit = opts.rows})
  local _, rec = M.train({name = name, seed = 1, train = train_rows, dev = dev_rows, dir = dir, config = opts.config,
                          time_budget = M.defaults.minutes * 60, quick = opts.quick,
                          progress = opts.progress})
  if not opts.quick then
    os.execute(("rm -rf %s && cp -r %s %s"):format(sh_quote(target), sh_quote(dir .. "/" .. name), sh_quote(target)))
  end
  log(("trained %s: dev accuracy %.2f%% after %d steps in %.1f min"):format(name, 100 * rec.accuracy,
                                                                         rec.steps, rec.seconds / 60))
  return target, true
end

return M
