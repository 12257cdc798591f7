-- The output folder of a search (docs/search.md, and the contract with chai serve and the MPI
-- search): meta.json, results.jsonl, progress.jsonl, search.log, sensitivity.json. Every line is
-- appended whole or not at all and fsynced (chai.core.files), so an interrupted run or a full disk
-- never leaves a partial line, and nothing written is ever rewritten: results only grow.
local core = require "chai.core"
local json = core.json
local files = core.files

local M = {}

local Store = {}
Store.__index = Store

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
M.exists = exists

-- A folder opens for reading as path/. (a file gives ENOTDIR, a missing path ENOENT).
local function is_dir(path)
  local f = io.open(path .. "/.", "rb")
  if f then f:close() end
  return f ~= nil
end
M.is_dir = is_dir

--- mkdir -p; raises naming the folder when it cannot be made.
function M.mkdir(path)
  if is_dir(path) then return path end
  local ok = os.execute("mkdir -p " .. sh_quote(path) .. " 2>/dev/null")
  if not ok or not is_dir(path) then error(("cannot create the folder %s"):format(path), 0) end
  return path
end

function M.rm_rf(path) os.execute("rm -rf " .. sh_quote(path)) end

--- A copy of a value that JSON can hold: NaN and infinities become null, functions and userdata
--- their tostring, cycles are cut. Integer-keyed tables with holes keep their keys as strings.
function M.plain(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return json.null end
    return v
  end
  if t == "string" or t == "boolean" or v == nil then return v end
  if t == "table" and depth < 60 then
    local n, count = #v, 0
    if getmetatable(v) == json.array_mt then -- a list, even when empty
      local out = setmetatable({}, json.array_mt)
      for i = 1, n do
        local x = M.plain(v[i], depth + 1)
        out[i] = x == nil and json.null or x
      end
      return out
    end
    for _ in pairs(v) do count = count + 1 end
    local out = {}
    if n > 0 and count == n then
      for i = 1, n do
        local x = M.plain(v[i], depth + 1)
        out[i] = x == nil and json.null or x
      end
      return out
    end
    for k, x in pairs(v) do
      local key = type(k) == "number" and tostring(math.tointeger(k) or k) or k
      if type(key) == "string" then out[key] = M.plain(x, depth + 1) end
    end
    return out
  end
  if v == json.null then return v end
  return tostring(v)
end

--- An empty list that JSON writes as [].
function M.array(list)
  return setmetatable(list or {}, json.array_mt)
end

--- Opens (creating it) an output folder.
function M.open(dir)
  M.mkdir(dir)
  return M.open_existing(dir)
end

--- An output folder's paths, without creating anything (to read another search's folder).
function M.open_existing(dir)
  return setmetatable({dir = dir, meta_path = dir .. "/meta.json", results_path = dir .. "/results.jsonl",
                       progress_path = dir .. "/progress.jsonl", log_path = dir .. "/search.log",
                       sensitivity_path = dir .. "/sensitivity.json", best_dir = dir .. "/best",
                       report_path = dir .. "/report.html", markdown_path = dir .. "/report.md"}, Store)
end

--- The files a rank other than 1 writes in a distributed search (docs/distributed.md): its
--- finished configurations in results.rank<k>.jsonl (appended as each finishes, so an interrupted
--- run loses nothing when the folder is shared; rank 1 takes them into results.jsonl), its lines in
--- search.rank<k>.log. The folder is made if missing (node-local disks); nothing else is written.
function M.open_rank(dir, rank)
  pcall(M.mkdir, dir)
  local s = M.open_existing(dir)
  s.results_path = ("%s/results.rank%d.jsonl"):format(dir, rank)
  s.log_path = ("%s/search.rank%d.log"):format(dir, rank)
  s.progress_path = nil
  return s
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end
M.read_all = read_all

--- meta.json as a table, or nil when the folder has none; raises naming the file when it is not
--- JSON.
function Store:read_meta()
  local text = read_all(self.meta_path)
  if not text then return nil end
  local ok, meta = pcall(json.decode, text)
  if not ok or type(meta) ~= "table" then
    error(("%s is not a search's meta.json (%s)"):format(self.meta_path, ok and "not an object" or tostring(meta)), 0)
  end
  return meta
end

--- Replaces meta.json (atomically).
function Store:write_meta(meta)
  files.replace(self.meta_path, json.encode(M.plain(meta), {indent = true}) .. "\n")
end

--- Appends one finished configuration to results.jsonl (one write + fsync). A failure (a full
--- disk) raises with the file named; the file then ends where it ended before.
function Store:append_result(obj)
  local line = json.encode(M.plain(obj)) .. "\n"
  files.append(self.results_path, line)
end

--- The results in file order. Lines that are not JSON objects (from some other writer) are
--- skipped and counted in the second value.
function Store:read_results()
  local text = read_all(self.results_path)
  local out, bad = {}, 0
  if not text then return out, bad end
  for line in text:gmatch("[^\n]+") do
    local ok, obj = pcall(json.decode, line)
    if ok and type(obj) == "table" and type(obj.name) == "string" then out[#out + 1] = obj else bad = bad + 1 end
  end
  return out, bad
end

--- The per-rank result files of a distributed search that stopped before rank 1 gathered them
--- (results.rank<k>.jsonl, see M.open_rank): their "ok" lines that results.jsonl lacks are appended
--- to it, and the files removed. Returns the number of lines taken. Raises as append_result does.
function Store:absorb_rank_files()
  local names = {}
  for _, name in ipairs(core.serve.listdir(self.dir) or {}) do
    if name:match("^results%.rank%d+%.jsonl$") then names[#names + 1] = name end
  end
  table.sort(names)
  local have = M.latest((self:read_results()))
  local taken = 0
  for _, name in ipairs(names) do
    local other = M.open_existing(self.dir)
    other.results_path = self.dir .. "/" .. name
    for _, r in ipairs((other:read_results())) do
      if r.status == "ok" and not (have[r.name] and have[r.name].status == "ok") then
        self:append_result(r)
        have[r.name] = r
        taken = taken + 1
      end
    end
    os.remove(other.results_path)
  end
  return taken
end

--- The latest result per configuration name: an "ok" line wins over a "failed" one, a later line
--- of the same status over an earlier one. Returns the map name → result.
function M.latest(results)
  local by = {}
  for _, r in ipairs(results) do
    local prev = by[r.name]
    if not prev or r.status == "ok" or prev.status ~= "ok" then by[r.name] = r end
  end
  return by
end

--- Appends one event to progress.jsonl; returns false (and the error) instead of raising, since
--- progress is advisory and a full disk is reported by the results writer.
function Store:event(ev)
  if not self.progress_path then return true end
  ev.t = ev.t or os.time()
  local ok, err = pcall(files.append, self.progress_path, json.encode(M.plain(ev)) .. "\n")
  return ok, err
end

--- Appends a line to search.log (prefixed with the local time); never raises.
function Store:log(line)
  local ok, err = pcall(files.append, self.log_path, os.date("%Y-%m-%d %H:%M:%S ") .. line .. "\n")
  return ok, err
end

function Store:read_events()
  local text = read_all(self.progress_path) or ""
  local out = {}
  for line in text:gmatch("[^\n]+") do
    local ok, obj = pcall(json.decode, line)
    if ok and type(obj) == "table" then out[#out + 1] = obj end
  end
  return out
end

function Store:read_sensitivity()
  local text = read_all(self.sensitivity_path)
  if not text then return nil end
  local ok, obj = pcall(json.decode, text)
  return ok and type(obj) == "table" and obj or nil
end

function Store:write_sensitivity(obj)
  files.replace(self.sensitivity_path, json.encode(M.plain(obj)) .. "\n")
end

--- Writes a text file of the folder atomically (report.html, report.md).
function Store:write_file(path, text)
  files.replace(path, text)
end

return M
