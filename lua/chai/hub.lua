-- chai.hub: files from the Hugging Face Hub, kept in the cache that huggingface_hub uses
-- ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), so Python tools and chai share
-- downloads. The work is done in C (engine/src/io/hub.c); see docs/hub.md.
--
--   chai.hub.download(repo, filename, {revision=, repo_type=, ...}) --> path, info
--   chai.hub.snapshot(repo, {revision=, files={...}, optional={...}}) --> folder, info
--   chai.hub.weights(repo, opts)          --> the weight files of a model (safetensors first)
--   chai.hub.locate(dir_or_id, opts)      --> a local folder as is, else the snapshot of a repo
--   chai.hub.cache_dir()                  --> the cache root
--   chai.hub.http_get(url, headers)       --> body (for JSON APIs; token sent to the Hub only)
--   chai.hub.http_fetch(url, headers)     --> body, status
--
-- Options shared by download/snapshot/weights/locate: revision (branch, tag, "refs/pr/N" or a
-- 40-hex commit; default "main"), repo_type ("model", "dataset", "space"), cache_dir, endpoint,
-- token ("" sends none), offline (true: cache only, as HF_HUB_OFFLINE=1), quiet (no progress bar).
local core = require("chai.core")._hub

local M = {}

local pass = {"revision", "repo_type", "cache_dir", "endpoint", "token", "offline", "quiet"}

local function check_opts(fname, opts, extra)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(fname .. ": options must be a table, got " .. type(opts), 3)
  end
  local known = {}
  for _, k in ipairs(pass) do known[k] = true end
  for _, k in ipairs(extra or {}) do known[k] = true end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (known: %s)", fname, tostring(k),
                          table.concat(names, ", ")), 3)
    end
  end
  return opts
end

local function fetch_opts(opts, revision, optional)
  local o = {}
  for _, k in ipairs(pass) do o[k] = opts[k] end
  if revision then o.revision = revision end
  o.optional = optional or nil
  return o
end

local function check_list(fname, key, list)
  if list == nil then return {} end
  if type(list) ~= "table" then error(fname .. ": " .. key .. " must be a list of file names", 3) end
  for i, name in ipairs(list) do
    if type(name) ~= "string" then
      error(string.format("%s: %s[%d] must be a file name, got %s", fname, key, i, type(name)), 3)
    end
  end
  return list
end

--- The local path of `filename` of `repo`, downloading it into the cache if needed; also returns
--- {commit=, etag=, size=, cached=}. With opts.optional = true a file that does not exist in the
--- repo gives nil and the message instead of an error.
function M.download(repo, filename, opts)
  opts = check_opts("chai.hub.download", opts, {"optional"})
  return core.fetch(repo, filename, opts)
end

--- Fetches opts.files (each must exist) and opts.optional (skipped when the repo lacks them) at
--- one commit and returns the snapshot folder plus {commit=, files={fetched...},
--- missing={skipped...}}. Without files, the folder of a revision already in the cache.
function M.snapshot(repo, opts)
  local fname = "chai.hub.snapshot"
  opts = check_opts(fname, opts, {"files", "optional"})
  local files = check_list(fname, "files", opts.files)
  local optional = check_list(fname, "optional", opts.optional)
  local info = {files = {}, missing = {}}
  local commit
  local function get(name, is_optional)
    -- pin the commit the first file resolved to, so a moving branch cannot mix two snapshots
    local path, meta = core.fetch(repo, name, fetch_opts(opts, commit, is_optional))
    if path then
      commit = commit or meta.commit
      info.files[#info.files + 1] = name
    else
      info.missing[#info.missing + 1] = name
    end
  end
  for _, name in ipairs(files) do get(name, false) end
  for _, name in ipairs(optional) do get(name, true) end
  local dir_opts = {revision = commit or opts.revision, repo_type = opts.repo_type,
                    cache_dir = opts.cache_dir}
  local dir = core.snapshot_dir(repo, dir_opts)
  info.commit = commit or dir:match("([0-9a-f]+)$")
  return dir, info
end

--- The weights of a model repo, fetched: model.safetensors if the revision has it, else a
--- safetensors index and its shards, else pytorch_model.bin, else a .bin index and its shards.
--- Returns the list of file names fetched (the index first when sharded) and the commit.
function M.weights(repo, opts)
  local fname = "chai.hub.weights"
  opts = check_opts(fname, opts)
  local json = require("chai.core").json
  local commit
  local function try(name)
    local path, meta = core.fetch(repo, name, fetch_opts(opts, commit or opts.revision, true))
    if path then commit = commit or meta.commit end
    return path
  end
  for _, base in ipairs({"model.safetensors", "pytorch_model.bin"}) do
    if try(base) then return {base}, commit end
    local index = base .. ".index.json"
    local path = try(index)
    if path then
      local f = assert(io.open(path, "rb"))
      local ok, map = pcall(json.decode, f:read("a"))
      f:close()
      if not ok or type(map) ~= "table" or type(map.weight_map) ~= "table" then
        error(string.format("%s: %s of %s has no weight_map", fname, index, repo), 2)
      end
      local names, seen = {index}, {}
      for _, shard in pairs(map.weight_map) do
        if type(shard) == "string" and not seen[shard] then
          seen[shard] = true
          names[#names + 1] = shard
        end
      end
      table.sort(names, function(a, b) return a == index or (b ~= index and a < b) end)
      for i = 2, #names do
        core.fetch(repo, names[i], fetch_opts(opts, commit))
      end
      return names, commit
    end
  end
  error(string.format("%s: %s at revision '%s' has none of model.safetensors, "
                      .. "model.safetensors.index.json, pytorch_model.bin, "
                      .. "pytorch_model.bin.index.json", fname, repo, opts.revision or "main"), 2)
end

--- The files `chai download REPO` and model loading fetch by default.
M.default_files = {"config.json", "vocab.json", "merges.txt"}
M.default_optional = {"tokenizer_config.json", "special_tokens_map.json",
                      "generation_config.json"}

--- A model folder: `dir_or_id` itself when it is a local folder, else the snapshot folder of the
--- Hub repo after fetching opts.files (default M.default_files), opts.optional (default
--- M.default_optional) and, unless opts.weights == false, the weights (M.weights).
function M.locate(dir_or_id, opts)
  local fname = "chai.hub.locate"
  if type(dir_or_id) ~= "string" then
    error(fname .. ": expected a folder or a Hub repo id, got " .. type(dir_or_id), 2)
  end
  opts = check_opts(fname, opts, {"files", "optional", "weights"})
  if core.is_dir(dir_or_id) then return dir_or_id end
  return M.model(dir_or_id, opts)
end

--- The snapshot folder of a model repo after fetching opts.files (default M.default_files),
--- opts.optional (default M.default_optional) and, unless opts.weights == false, the weights.
function M.model(repo, opts)
  local fname = "chai.hub.model"
  opts = check_opts(fname, opts, {"files", "optional", "weights"})
  local sopts = {}
  for _, k in ipairs(pass) do sopts[k] = opts[k] end
  sopts.files = opts.files or M.default_files
  sopts.optional = opts.optional or M.default_optional
  local dir, info = M.snapshot(repo, sopts)
  if opts.weights ~= false then
    sopts.files, sopts.optional = nil, nil
    sopts.revision = info.commit
    M.weights(repo, sopts)
  end
  return dir
end

--- The cache root (opts.cache_dir, else the environment's), not created.
function M.cache_dir(opts)
  return core.cache_dir(check_opts("chai.hub.cache_dir", opts))
end

--- The repo's folder name in the cache ("models--org--name").
M.repo_folder = core.repo_folder

--- GET url → body; raises on a network failure or a non-2xx status (naming it). headers: a list
--- of "Name: value" strings or a {Name = value} table. The token goes only to huggingface.co,
--- hf.co and $HF_ENDPOINT.
M.http_get = core.http_get
--- GET url → body, status; raises only when no reply came.
M.http_fetch = core.http_fetch

-- ---------------------------------------------------------------------------------------------
-- `chai download REPO [FILE...] [--revision R] [--repo-type T] [--cache-dir D] [--quiet]`

M.download_usage = "REPO [FILE...] [--revision R] [--repo-type model|dataset|space] "
                   .. "[--cache-dir DIR] [--quiet]"

--- The `chai download` subcommand. args: the words after "download". Prints the local path of
--- a single FILE, else the snapshot folder. Returns the exit status; the user's mistakes (a bad
--- argument, a repo or file the Hub does not have, no network) stop with one line through
--- chai.cli.fail.
function M.cli_download(args)
  local cli = require "chai.cli"
  local function usage_error(msg)
    cli.fail("chai download: " .. msg .. " (usage: chai download " .. M.download_usage .. ")", 2)
  end
  local repo, files, o = nil, {}, {}
  local flags = {["--revision"] = "revision", ["--repo-type"] = "repo_type",
                 ["--cache-dir"] = "cache_dir"}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^(%-%-[%w%-]+)=(.*)$")
    name = name or a
    if a == "-h" or a == "--help" then
      io.stdout:write("usage: chai download ", M.download_usage, "\n",
                      "Fetches files of a Hugging Face Hub repo into the shared cache (",
                      M.cache_dir(), ").\nWithout FILE: config.json, the tokenizer files and ",
                      "the weights (model.safetensors if present, else pytorch_model.bin).\n")
      return 0
    elseif flags[name] then
      if not value then
        i = i + 1
        value = args[i]
      end
      if not value then usage_error(name .. " needs a value") end
      o[flags[name]] = value
    elseif a == "--quiet" then
      o.quiet = true
    elseif a:sub(1, 1) == "-" then
      usage_error("unknown option '" .. a .. "'")
    elseif not repo then
      repo = a
    else
      files[#files + 1] = a
    end
    i = i + 1
  end
  if not repo then usage_error("missing REPO") end
  if o.repo_type and o.repo_type ~= "model" and #files == 0 then
    usage_error("name the FILEs to fetch from a " .. o.repo_type .. " repo")
  end
  local what = "chai download " .. repo
  if #files == 1 then
    print((cli.guard(what, M.download, repo, files[1], o)))
    return 0
  end
  local dir
  if #files > 0 then
    o.files = files
    dir = cli.guard(what, M.snapshot, repo, o)
  else
    dir = cli.guard(what, M.model, repo, o)
  end
  print(dir)
  return 0
end

return M
