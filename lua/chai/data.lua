-- chai.data: readers (TSV, CSV, JSON Lines), the datasets-server /rows client, the sst2 / rte / piqa
-- tasks, seeded shuffling, batching and length buckets.
local json = require("chai.core").json

local M = {}

local function read_lines(path)
  local f, err = io.open(path, "rb")
  if not f then error("chai.data: cannot open '" .. path .. "': " .. tostring(err), 3) end
  local text = f:read("a")
  f:close()
  local lines = {}
  for line in text:gmatch("([^\n]*)\n?") do lines[#lines + 1] = line end
  if lines[#lines] == "" then lines[#lines] = nil end -- the final newline
  for i, line in ipairs(lines) do
    if line:sub(-1) == "\r" then lines[i] = line:sub(1, -2) end
  end
  return lines
end

local function split_tab(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do fields[#fields + 1] = field end
  return fields
end

--- TSV with a header line, split on TAB only (no quoting): rows as tables keyed by the header.
function M.read_tsv(path)
  local lines = read_lines(path)
  if #lines == 0 then error("chai.data: '" .. path .. "' is empty (expected a header line)", 2) end
  local header = split_tab(lines[1])
  local rows = {}
  for i = 2, #lines do
    local fields = split_tab(lines[i])
    if #fields ~= #header then
      error(string.format("chai.data: %s line %d has %d fields, the header has %d", path, i,
                          #fields, #header), 2)
    end
    local row = {}
    for j, name in ipairs(header) do row[name] = fields[j] end
    rows[#rows + 1] = row
  end
  return rows, header
end

--- CSV (RFC 4180: fields may be quoted with ", "" inside quotes is a quote, quoted fields may hold
--- commas and newlines) with a header line.
function M.read_csv(path)
  local f, err = io.open(path, "rb")
  if not f then error("chai.data: cannot open '" .. path .. "': " .. tostring(err), 2) end
  local text = f:read("a")
  f:close()
  local records, record, field = {}, {}, {}
  local i, n, line = 1, #text, 1
  local in_quotes, quoted_at = false, nil
  while i <= n do
    local c = text:sub(i, i)
    if in_quotes then
      if c == '"' then
        if text:sub(i + 1, i + 1) == '"' then
          field[#field + 1] = '"'; i = i + 1
        else
          in_quotes = false
        end
      else
        if c == "\n" then line = line + 1 end
        field[#field + 1] = c
      end
    elseif c == '"' then
      if #field > 0 then
        error(string.format("chai.data: %s line %d: a quote inside an unquoted field", path, line), 2)
      end
      in_quotes, quoted_at = true, line
    elseif c == "," then
      record[#record + 1] = table.concat(field); field = {}
    elseif c == "\n" or c == "\r" then
      if c == "\r" and text:sub(i + 1, i + 1) == "\n" then i = i + 1 end
      record[#record + 1] = table.concat(field); field = {}
      records[#records + 1] = record; record = {}
      line = line + 1
    else
      field[#field + 1] = c
    end
    i = i + 1
  end
  if in_quotes then
    error(string.format("chai.data: %s: the quoted field opened on line %d never closes", path, quoted_at), 2)
  end
  if #field > 0 or #record > 0 then
    record[#record + 1] = table.concat(field)
    records[#records + 1] = record
  end
  if #records == 0 then error("chai.data: '" .. path .. "' is empty (expected a header line)", 2) end
  local header, rows = records[1], {}
  for r = 2, #records do
    local rec = records[r]
    if #rec ~= #header then
      error(string.format("chai.data: %s record %d has %d fields, the header has %d", path, r,
                          #rec, #header), 2)
    end
    local row = {}
    for j, name in ipairs(header) do row[name] = rec[j] end
    rows[#rows + 1] = row
  end
  return rows, header
end

--- JSON Lines: one JSON object per non-empty line.
function M.read_jsonl(path)
  local rows = {}
  for i, line in ipairs(read_lines(path)) do
    if line:find("%S") then
      local ok, row = pcall(json.decode, line)
      if not ok then error(string.format("chai.data: %s line %d: %s", path, i, row), 2) end
      if type(row) ~= "table" then
        error(string.format("chai.data: %s line %d is not a JSON object", path, i), 2)
      end
      rows[#rows + 1] = row
    end
  end
  return rows
end

--- Writes rows as JSON Lines atomically (temp file, then rename).
function M.write_jsonl(path, rows)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error("chai.data: cannot write '" .. tmp .. "': " .. tostring(err), 2) end
  for _, row in ipairs(rows) do f:write(json.encode(row), "\n") end
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then error("chai.data: cannot rename '" .. tmp .. "': " .. tostring(rerr), 2) end
end

-- ---------------------------------------------------------------------------------------------
-- Seeded randomness: splitmix64, so the order depends on the seed alone (not on math.random's
-- state or Lua's version).

local function splitmix(state)
  state = state + 0x9e3779b97f4a7c15
  local z = state
  z = (z ~ (z >> 30)) * -4658895280553007687 -- 0xbf58476d1ce4e5b9
  z = (z ~ (z >> 27)) * -7723592293110705685 -- 0x94d049bb133111eb
  return state, z ~ (z >> 31)
end

--- A generator: rng(n) → an integer in 1..n.
function M.rng(seed)
  local state = math.tointeger(seed) or error("chai.data: seed must be an integer, got " .. tostring(seed), 2)
  return function(n)
    local z
    state, z = splitmix(state)
    return (z >> 1) % n + 1
  end
end

--- A shuffled copy of `list` (Fisher–Yates with a seeded generator).
function M.shuffle(list, seed)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  local rand = M.rng(seed or 0)
  for i = #out, 2, -1 do
    local j = rand(i)
    out[i], out[j] = out[j], out[i]
  end
  return out
end

--- Splits `rows` into batches of opts.batch_size (default 16).
--- opts.shuffle (with opts.seed) shuffles rows first; opts.length = function(row) → number turns on
--- length buckets: rows are shuffled, then sorted by length within windows of
--- opts.bucket_batches (default 50) batches, so each batch holds rows of similar length and little
--- padding; the batch order is then shuffled again when opts.shuffle is set.
function M.batches(rows, opts)
  opts = opts or {}
  local known = {batch_size = true, shuffle = true, seed = true, length = true, bucket_batches = true,
                 drop_last = true}
  for k in pairs(opts) do
    if not known[k] then error("chai.data.batches: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local bs = opts.batch_size or 16
  if math.type(bs) ~= "integer" or bs < 1 then
    error("chai.data.batches: batch_size must be a positive integer, got " .. tostring(bs), 2)
  end
  local order = opts.shuffle and M.shuffle(rows, opts.seed or 0) or {table.unpack(rows)}
  if opts.length then
    local window = bs * (opts.bucket_batches or 50)
    for start = 1, #order, window do
      local chunk = {}
      for i = start, math.min(start + window - 1, #order) do chunk[#chunk + 1] = {order[i], opts.length(order[i]), i} end
      table.sort(chunk, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[3] < b[3] end)
      for i, c in ipairs(chunk) do order[start + i - 1] = c[1] end
    end
  end
  local out = {}
  for i = 1, #order, bs do
    local batch = {}
    for j = i, math.min(i + bs - 1, #order) do batch[#batch + 1] = order[j] end
    if #batch == bs or not opts.drop_last then out[#out + 1] = batch end
  end
  if opts.length and opts.shuffle then out = M.shuffle(out, (opts.seed or 0) + 1) end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- The datasets-server /rows API (100 rows a page), cached as JSON Lines under the HF cache.

local function env(name) local v = os.getenv(name); return v ~= "" and v or nil end

local function mkdir_p(path)
  local ok = os.execute("mkdir -p '" .. path:gsub("'", "'\\''") .. "'")
  if not ok then error("chai.data: cannot create folder '" .. path .. "'", 3) end
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function url_escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function http_get_json(url)
  local hub = require "chai.hub"
  local body = hub.http_get(url)
  local ok, value = pcall(json.decode, body)
  if not ok then error("chai.data: " .. url .. " did not return JSON: " .. value, 3) end
  return value
end

--- Rows of a dataset split through the datasets-server /rows API, cached under the HF cache as
--- datasets--{org}--{name}/chai-rows/{revision}/{config}/{split}.jsonl. opts.revision pins a commit
--- (default: the commit `main` points to, asked of the Hub). HF_HUB_OFFLINE=1 (or opts.offline)
--- reads the cache only; opts.cache_dir overrides the HF cache folder, opts.endpoint the Hub
--- ($HF_ENDPOINT) and opts.server the datasets-server ($CHAI_DATASETS_SERVER).
function M.rows_api(dataset, config, split, opts)
  opts = opts or {}
  local folder = (opts.cache_dir or require("chai.hub").cache_dir()) .. "/datasets--" .. dataset:gsub("/", "--") .. "/chai-rows"
  local offline = opts.offline or env("HF_HUB_OFFLINE") == "1"
  local revision = opts.revision
  if not revision then
    local ref = folder .. "/refs/main"
    if offline then
      local f = io.open(ref, "rb")
      if not f then
        error(string.format("chai.data: %s %s/%s is not cached and HF_HUB_OFFLINE=1 (looked for %s)",
                            dataset, config, split, ref), 2)
      end
      revision = f:read("l"); f:close()
    else
      local endpoint = opts.endpoint or env("HF_ENDPOINT") or "https://huggingface.co"
      local info = http_get_json(endpoint .. "/api/datasets/" .. dataset .. "/revision/main")
      revision = info.sha or error("chai.data: the Hub gave no commit for dataset " .. dataset, 2)
      mkdir_p(folder .. "/refs")
      local f = assert(io.open(ref, "wb")); f:write(revision, "\n"); f:close()
    end
  end
  local cached = string.format("%s/%s/%s/%s.jsonl", folder, revision, config, split)
  if file_exists(cached) then return M.read_jsonl(cached), revision end
  if offline then
    error(string.format("chai.data: %s %s/%s at %s is not cached and HF_HUB_OFFLINE=1 (looked for %s)",
                        dataset, config, split, revision, cached), 2)
  end
  local server = opts.server or env("CHAI_DATASETS_SERVER") or "https://datasets-server.huggingface.co"
  local rows, offset, total = {}, 0, nil
  repeat
    local url = string.format("%s/rows?dataset=%s&config=%s&split=%s&offset=%d&length=100", server,
                              url_escape(dataset), url_escape(config), url_escape(split), offset)
    local page = http_get_json(url)
    if type(page.rows) ~= "table" then error("chai.data: " .. url .. " returned no rows", 2) end
    if page.partial == true then
      error("chai.data: the datasets-server serves only part of " .. dataset .. " (partial=true)", 2)
    end
    total = page.num_rows_total or total
    for _, r in ipairs(page.rows) do rows[#rows + 1] = r.row end
    offset = offset + #page.rows
  until #page.rows == 0 or (total and offset >= total)
  if total and #rows ~= total then
    error(string.format("chai.data: got %d rows of %s %s/%s, expected %d", #rows, dataset, config, split, total), 2)
  end
  mkdir_p(cached:match("(.*)/"))
  M.write_jsonl(cached, rows)
  return rows, revision
end

-- ---------------------------------------------------------------------------------------------
-- Tasks. Each has the fields and splits of GLUE / lm-evaluation-harness; `label` is 0-based as in
-- the data (RTE: 0 = entailment).

local tasks = {
  sst2 = {
    hub = {"nyu-mll/glue", "sst2"},
    fields = {"sentence", "label"},
    num_labels = 2,
    mirror = {validation = "sst2/glue_dev.tsv", train = "sst2/glue_train.tsv"},
    -- The mirror dropped the trailing space GLUE (and so the Hub copy) puts after every sentence;
    -- put it back so prompts are byte-identical to the harness's.
    from_mirror = function(r) return {sentence = r.sentence .. " ", label = tonumber(r.label)} end,
  },
  rte = {
    hub = {"nyu-mll/glue", "rte"},
    fields = {"sentence1", "sentence2", "label"},
    num_labels = 2,
    mirror = {validation = "rte/dev.tsv", train = "rte/train.tsv"},
    from_mirror = function(r)
      return {sentence1 = r.sentence1, sentence2 = r.sentence2, label = tonumber(r.label)}
    end,
  },
  piqa = {
    hub = {"baber/piqa", "default"},
    fields = {"goal", "sol1", "sol2", "label"},
    num_labels = 2,
    mirror = {validation = "piqa/valid.jsonl"},
    from_mirror = function(r) return {goal = r.goal, sol1 = r.sol1, sol2 = r.sol2, label = r.label} end,
  },
}

M.task_names = {"piqa", "rte", "sst2"}

--- The local data folder: opts.data_dir, else $CHAI_DATA_DIR; nil when neither is set. It has
--- the layout sst2/glue_{dev,train}.tsv, rte/{dev,train}.tsv, piqa/valid.jsonl and
--- opt-tokenizer/{vocab.json,merges.txt} (tests/fixtures/data is a small one).
function M.dir(opts)
  return opts and opts.data_dir or env("CHAI_DATA_DIR")
end

-- Why the local folder did not serve `file` (a path inside it; nil when the layout has none).
local function local_miss(data_dir, file, what)
  if not file then return "the data folder layout has no file for " .. what end
  if not data_dir then return "$CHAI_DATA_DIR is unset" end
  return string.format("the data folder %s has no %s", data_dir, file)
end

-- A caught error's message without its "file.lua:12: " position and "chai.data: " prefix.
local function reason(err)
  return (tostring(err):gsub("^[^%s:]+%.lua:%d+: ", ""):gsub("^chai%.data: ", ""))
end

--- What a task offers without loading it: {name=, fields=, num_labels=, splits = {{name=,
--- local=bool}, ...}}, `local` telling whether the split's file is in the data folder (M.dir(opts));
--- other splits come from the Hub. nil for an unknown task.
function M.task_info(name, opts)
  local t = tasks[name]
  if not t then return nil end
  local data_dir = M.dir(opts)
  local splits = {}
  for split, file in pairs(t.mirror) do
    splits[#splits + 1] = {name = split, ["local"] = data_dir ~= nil and file_exists(data_dir .. "/" .. file)}
  end
  table.sort(splits, function(a, b) return a.name < b.name end)
  return {name = name, fields = {table.unpack(t.fields)}, num_labels = t.num_labels, splits = splits}
end

local function check_opts(fname, opts, known)
  opts = opts or {}
  if type(opts) ~= "table" then error(fname .. ": options must be a table, got " .. type(opts), 3) end
  for k in pairs(opts) do
    if not known[k] then error(string.format("%s: unknown option '%s'", fname, tostring(k)), 3) end
  end
  return opts
end

local task_opts = {data_dir = true, revision = true, offline = true, cache_dir = true, endpoint = true,
                   server = true}

--- Loads a task split: {name=, split=, rows=, fields=, num_labels=, source=, revision=}.
--- Source: the local data folder (M.dir: opts.data_dir, else $CHAI_DATA_DIR) when it has the
--- file, else the Hub's /rows API, cached (opts.revision, offline, cache_dir, endpoint and server
--- as for M.rows_api; HF_HUB_OFFLINE=1 or offline = true reads the cache only). When neither
--- serves, the error names both ways.
function M.task(name, split, opts)
  opts = check_opts("chai.data.task", opts, task_opts)
  local t = tasks[name]
  if not t then
    error(string.format("chai.data: unknown task '%s' (known: %s)", tostring(name), table.concat(M.task_names, ", ")), 2)
  end
  split = split or "validation"
  local data_dir = M.dir(opts)
  local rows, source, revision
  local mirror_file = t.mirror[split]
  if data_dir and mirror_file and file_exists(data_dir .. "/" .. mirror_file) then
    local path = data_dir .. "/" .. mirror_file
    local raw = path:match("%.jsonl$") and M.read_jsonl(path) or M.read_tsv(path)
    rows = {}
    for i, r in ipairs(raw) do
      local row = t.from_mirror(r)
      if row.label ~= 0 and row.label ~= 1 then
        error(string.format("chai.data: %s row %d has label %s (expected 0 or 1)", path, i, tostring(r.label)), 2)
      end
      rows[i] = row
    end
    source = path
  else
    local ok, res, rev = pcall(M.rows_api, t.hub[1], t.hub[2], split,
                               {revision = opts.revision, offline = opts.offline, cache_dir = opts.cache_dir,
                                endpoint = opts.endpoint, server = opts.server})
    if not ok then
      local fix = "run once with network access (the rows are then cached)"
      if mirror_file then fix = "set CHAI_DATA_DIR to a data folder holding " .. mirror_file .. ", or " .. fix end
      error(string.format("chai.data: no %s %s split: %s, and the Hub's rows API (%s, config %s) failed: %s. " ..
                          "To fix: %s", name, split, local_miss(data_dir, mirror_file, name .. " " .. split),
                          t.hub[1], t.hub[2], reason(res), fix), 2)
    end
    rows, revision = {}, rev
    for i, r in ipairs(res) do
      local row = {}
      for _, f in ipairs(t.fields) do row[f] = r[f] end
      rows[i] = row
    end
    source = "hub:" .. t.hub[1] .. "/" .. t.hub[2]
  end
  return {name = name, split = split, rows = rows, fields = t.fields, num_labels = t.num_labels,
          source = source, revision = revision}
end

--- The Hub repo whose tokenizer M.tokenizer falls back to.
M.tokenizer_repo = "facebook/opt-125m"

local tokenizer_opts = {data_dir = true, add_bos = true, revision = true, offline = true, cache_dir = true,
                        endpoint = true, quiet = true}

--- The OPT tokenizer (GPT-2's byte-level BPE with the OPT/RoBERTa vocabulary): opt-tokenizer/ of
--- the local data folder (M.dir) when it has one, else vocab.json and merges.txt of
--- facebook/opt-125m from the Hub (cached; opts.revision, offline, cache_dir, endpoint and quiet
--- as for chai.hub). add_bos is false unless opts.add_bos is true, whichever the source (the
--- local folder has no tokenizer_config.json; the Hub's would turn it on), so both encode alike.
--- Returns the tokenizer and where it came from (a folder, or "hub:facebook/opt-125m"). When
--- neither serves, the error names both ways.
function M.tokenizer(opts)
  opts = check_opts("chai.data.tokenizer", opts, tokenizer_opts)
  if opts.add_bos ~= nil and type(opts.add_bos) ~= "boolean" then
    error("chai.data.tokenizer: option add_bos must be a boolean, got " .. type(opts.add_bos), 2)
  end
  local tokenizer = require "chai.tokenizer"
  local add_bos = opts.add_bos == true
  local data_dir = M.dir(opts)
  local folder = data_dir and data_dir .. "/opt-tokenizer"
  if folder and file_exists(folder .. "/vocab.json") then
    return tokenizer.load(folder, {add_bos = add_bos}), folder
  end
  local ok, tok = pcall(tokenizer.load, M.tokenizer_repo,
                        {add_bos = add_bos, revision = opts.revision, offline = opts.offline,
                         cache_dir = opts.cache_dir, endpoint = opts.endpoint, quiet = opts.quiet})
  if ok then return tok, "hub:" .. M.tokenizer_repo end
  error(string.format("chai.data: no OPT tokenizer: %s, and the Hub (%s) failed: %s. To fix: set " ..
                      "CHAI_DATA_DIR to a data folder holding opt-tokenizer/vocab.json and merges.txt, " ..
                      "or fetch them once with network access: chai download %s vocab.json merges.txt",
                      local_miss(data_dir, "opt-tokenizer/vocab.json"), M.tokenizer_repo, reason(tok),
                      M.tokenizer_repo), 2)
end

return M
