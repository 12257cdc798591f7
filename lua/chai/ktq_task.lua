-- chai.ktq tasks and data discipline. A task holds its splits as data sets that know where they
-- came from (split "train" or "validation"); slices of the train split are drawn seeded and
-- disjoint; anything that calibrates, scores sensitivity or stops early takes train slices only,
-- and the validation split is read for the final metrics alone (chai.ktq.measure).
--
--   local task = chai.ktq.task("sst2", {tokenizer = tok})     -- "sst2" | "rte" (classify), "piqa"
--   task.train, task.dev                                       -- data sets (task.train nil for piqa)
--   local s = task:slices{calibration = 256, sensitivity = 256, heldout = 500, seed = 1}
--   s.calibration, s.sensitivity, s.heldout, s.fit             -- disjoint slices of task.train
--   task:encode(ds) --> {{ids=, label=}, ...}   task:texts(ds) --> {string, ...}
local data = require "chai.data"
local eval = require "chai.eval"
local train = require "chai.train"

local M = {}

local DATASET = {__name = "chai.ktq.dataset"}
DATASET.__index = DATASET

local function dataset(task, split, rows, purpose)
  return setmetatable({task = task.name, split = split, rows = rows, purpose = purpose,
                       owner = task}, DATASET)
end

--- True for a data set made by chai.ktq (a task's split or a slice of it).
function M.is_dataset(x) return getmetatable(x) == DATASET end

local KINDS = {sst2 = "classify", rte = "classify", piqa = "zeroshot"}
M.names = {"piqa", "rte", "sst2"}

-- Default slice sizes of the train split, each capped at a tenth of it.
M.slice_defaults = {calibration = 256, sensitivity = 256, heldout = 500}
local SLICES = {"calibration", "sensitivity", "heldout"}

local function default_tokenizer(fname)
  local dir = os.getenv("CHAI_DATA_DIR")
  if dir and dir ~= "" then
    local f = io.open(dir .. "/opt-tokenizer/vocab.json", "rb")
    if f then
      f:close()
      return require("chai.tokenizer").load(dir .. "/opt-tokenizer")
    end
  end
  error(fname .. ": no tokenizer given (opts.tokenizer: a chai tokenizer or a folder), and "
        .. "$CHAI_DATA_DIR/opt-tokenizer is not there", 3)
end

local TASK_KNOWN = {tokenizer = true, data_dir = true, max_length = true, add_eos = true,
                    train = true, validation = true}

local Task = {__name = "chai.ktq.task"}
Task.__index = Task

--- True for a task made by chai.ktq.task.
function M.is_task(x) return getmetatable(x) == Task end

--- A task: name ("sst2", "rte": classification with the score head; "piqa": zero-shot multiple
--- choice through chai.eval), its tokenizer and its splits. opts: tokenizer (a chai tokenizer, any
--- table with :encode(text, {add_bos=}), or a folder; default $CHAI_DATA_DIR/opt-tokenizer),
--- data_dir (chai.data.task's), max_length of an encoded row [128], add_eos [false] (end each
--- classification row with </s>), train / validation: rows that replace a split (tests, a user's
--- own data; rows as chai.data.task gives them, or already encoded with ids).
function M.task(name, opts)
  local fname = "chai.ktq.task"
  opts = opts or {}
  if type(opts) ~= "table" then error(fname .. ": options must be a table", 2) end
  for k in pairs(opts) do
    if not TASK_KNOWN[k] then error(("%s: unknown option '%s'"):format(fname, tostring(k)), 2) end
  end
  local kind = KINDS[name]
  if not kind then
    error(("%s: unknown task '%s' (known: %s)"):format(fname, tostring(name), table.concat(M.names, ", ")), 2)
  end
  local tok = opts.tokenizer
  if type(tok) == "string" then tok = require("chai.tokenizer").load(tok) end
  local t = setmetatable({name = name, kind = kind, num_labels = 2,
                          max_length = opts.max_length or 128, add_eos = opts.add_eos or false},
                         Task)
  if math.type(t.max_length) ~= "integer" or t.max_length < 2 then
    error(fname .. ": max_length must be an integer >= 2, got " .. tostring(t.max_length), 2)
  end
  local function split_rows(split, given)
    if given ~= nil then
      if type(given) ~= "table" or #given == 0 then
        error(("%s: %s must be a non-empty list of rows"):format(fname, split), 3)
      end
      return given
    end
    if split == "train" and kind == "zeroshot" then return nil end -- PIQA: no train split here
    return data.task(name, split, {data_dir = opts.data_dir}).rows
  end
  local dev = split_rows("validation", opts.validation)
  local tr = split_rows("train", opts.train)
  t.dev = dataset(t, "validation", dev)
  t.train = tr and dataset(t, "train", tr) or nil
  local needs_tok = false
  for _, r in ipairs({dev[1], tr and tr[1]}) do
    if r and not r.ids then needs_tok = true end
  end
  t.tokenizer = tok or (needs_tok and default_tokenizer(fname)) or nil
  return t
end

--- The text a classification row is read as (chai.eval.classify_text), or a zero-shot prompt.
function Task:text(row)
  if row.text then return row.text end
  if self.kind == "classify" then return eval.classify_text[self.name](row) end
  return eval.templates[self.name].text(row)
end

--- Encoded rows {ids=, label=} of a data set (cached on it): chai.train.encode with the task's
--- max_length and add_eos; rows that already carry ids are taken as they are.
function Task:encode(ds)
  if ds._encoded then return ds._encoded end
  local out, raw = {}, {}
  for i, r in ipairs(ds.rows) do
    if r.ids then out[i] = {ids = r.ids, label = r.label} else raw[#raw + 1] = i end
  end
  if #raw > 0 then
    if not self.tokenizer then error("chai.ktq: task " .. self.name .. " has no tokenizer to encode text rows", 2) end
    local rows = {}
    for k, i in ipairs(raw) do rows[k] = ds.rows[i] end
    local enc = train.encode(rows, self.tokenizer, {text = function(r) return self:text(r) end,
                                                    max_length = self.max_length, add_eos = self.add_eos})
    for k, i in ipairs(raw) do out[i] = enc[k] end
  end
  ds._encoded = out
  return out
end

--- The texts of a data set (for attention calibration); rows with only ids give nil entries and
--- are skipped by the callers that need text.
function Task:texts(ds)
  local out = {}
  for _, r in ipairs(ds.rows) do
    if not r.ids or r.text then out[#out + 1] = self:text(r) end
  end
  return out
end

-- The rows of a data set as token-id lists, for attention statistics: encoded ids cut to `tokens`.
function Task:id_lists(ds, tokens)
  local out = {}
  for i, r in ipairs(self:encode(ds)) do
    local ids = r.ids
    if #ids > tokens then ids = {table.unpack(ids, 1, tokens)} end
    out[i] = ids
  end
  return out
end

--- Seeded, disjoint slices of the train split: {calibration=, sensitivity=, heldout=, fit=} (fit =
--- the rest, the rows training steps learn from). sizes: calibration, sensitivity, heldout (rows;
--- defaults M.slice_defaults, each capped at a tenth of the split), seed [0], fit (cap on the fit
--- rows; default all the rest). The same seed and sizes give the same slices.
function Task:slices(sizes)
  local fname = "chai.ktq: slices"
  sizes = sizes or {}
  if not self.train then
    error(("chai.ktq: task %s has no train split here, so there is nothing to calibrate, score or "
           .. "train on (the validation split is for the final metrics only)"):format(self.name), 2)
  end
  local n = #self.train.rows
  local seed = sizes.seed or 0
  if math.type(seed) ~= "integer" then error(fname .. ": seed must be an integer, got " .. tostring(seed), 2) end
  local want, total = {}, 0
  for _, key in ipairs(SLICES) do
    local s = sizes[key]
    if s == nil then
      s = math.min(M.slice_defaults[key], math.max(1, n // 10))
    elseif math.type(s) ~= "integer" or s < 1 then
      error(("%s: data.%s must be a positive number of rows, got %s"):format(fname, key, tostring(s)), 2)
    end
    want[key] = s
    total = total + s
  end
  if total >= n then
    error(("%s: calibration %d + sensitivity %d + heldout %d rows leave nothing to train on in the "
           .. "%d rows of %s's train split"):format(fname, want.calibration, want.sensitivity,
                                                   want.heldout, n, self.name), 2)
  end
  local idx = {}
  for i = 1, n do idx[i] = i end
  idx = data.shuffle(idx, seed)
  local out, pos = {}, 0
  local function take(count, purpose)
    local rows = {}
    for i = 1, count do rows[i] = self.train.rows[idx[pos + i]] end
    pos = pos + count
    return dataset(self, "train", rows, purpose)
  end
  for _, key in ipairs(SLICES) do out[key] = take(want[key], key) end
  local rest = n - pos
  if sizes.fit ~= nil then
    if math.type(sizes.fit) ~= "integer" or sizes.fit < 1 then
      error(("%s: data.fit must be a positive number of rows, got %s"):format(fname, tostring(sizes.fit)), 2)
    end
    rest = math.min(rest, sizes.fit)
  end
  out.fit = take(rest, "fit")
  out.seed = seed
  return out
end

-- ---------------------------------------------------------------------------------------------
-- Data discipline

local DEV_NAMES = {validation = true, dev = true, test = true, eval = true}

local function dev_message(where, what)
  return ("chai.ktq: %s is %s; calibration, sensitivity, early stopping and every other choice "
          .. "use slices of the train split (the validation split is read only for the final "
          .. "metrics)"):format(where, what)
end

--- Checks a value a recipe hands to calibration, sensitivity or early stopping (`where` names it,
--- e.g. "chai.calibration"): a count of rows, a train data set, or a user's own list of rows/texts
--- that shares nothing with the task's validation split. Raises naming `where` otherwise.
function M.check_train_data(task, value, where)
  if value == nil or math.type(value) == "integer" then return value end
  if type(value) == "string" then
    if DEV_NAMES[value] then error(dev_message(where, "the " .. value .. " split"), 0) end
    error(("chai.ktq: %s = '%s' is not a data set (give a number of train rows, or a slice)"):format(where, value), 0)
  end
  if M.is_dataset(value) then
    if value.split ~= "train" then error(dev_message(where, "the " .. value.split .. " split"), 0) end
    return value
  end
  if type(value) ~= "table" then
    error(("chai.ktq: %s must be a number of rows or a data set, got %s"):format(where, type(value)), 0)
  end
  if task and task.dev then
    -- A user's own rows: refused when any of them is a validation row.
    local seen = task._dev_keys
    if not seen then
      seen = {}
      for _, r in ipairs(task.dev.rows) do
        seen[r.ids and table.concat(r.ids, ",") or task:text(r)] = true
      end
      task._dev_keys = seen
    end
    for i, r in ipairs(value) do
      local key = type(r) == "string" and r or (type(r) == "table" and
                  (r.ids and table.concat(r.ids, ",") or task:text(r))) or nil
      if key and seen[key] then
        error(dev_message(where, ("a list whose row %d is in the validation split"):format(i)), 0)
      end
    end
  end
  return value
end

--- A data set of the user's own rows or texts (already checked by check_train_data), so steps and
--- sensitivity take them like a slice.
function M.user_dataset(task, rows, purpose)
  local out = {}
  for i, r in ipairs(rows) do out[i] = type(r) == "string" and {text = r} or r end
  return dataset(task, "train", out, purpose)
end

return M
