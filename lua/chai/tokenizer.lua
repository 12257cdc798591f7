-- chai.tokenizer: OPT's byte-level BPE (GPT-2 rules) from vocab.json + merges.txt.
--   local tok = chai.tokenizer.load("data/opt-tokenizer")   -- a folder, or a Hub id
--   tok:encode("Hello world")            --> {31414, 232}   ({add_bos=true} --> {2, 31414, 232})
--   tok:decode({31414, 232})             --> "Hello world"
--   local ids, mask = tok:batch({"a", "b c"}, {pad = "left", max_length = 8, truncation = true})
-- The engine (engine/src/io/tokenizer*.c) does the work; this file adds the Hub lookup and batching.
-- See docs/tokenizer.md.
local core = require "chai.core"
local C = core._tokenizer
local methods = C.methods

local M = {}

local function check_options(opts, fname, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("%s: options must be a table, got %s"):format(fname, type(opts)), 3)
  end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      table.sort(names)
      error(("%s: unknown option '%s' (known: %s)"):format(fname, tostring(k),
        table.concat(names, ", ")), 3)
    end
  end
  return opts
end

-- A Hub id is "name" or "org/name" (letters, digits, '-', '_', '.'), not a path.
local function looks_like_hub_id(s)
  return (s:match("^[%w][%w%-_.]*/[%w][%w%-_.]*$") or s:match("^[%w][%w%-_.]*$"))
    and not s:find("..", 1, true)
end

-- Options handed to chai.hub for a repo id (see docs/hub.md).
local hub_options = {"revision", "cache_dir", "endpoint", "token", "offline", "quiet"}

-- Fetches the tokenizer files of a Hub repo into the cache (one commit); returns the snapshot
-- folder.
local function hub_folder(id, opts)
  local ok, hub = pcall(require, "chai.hub")
  if not ok or type(hub) ~= "table" or type(hub.snapshot) ~= "function" then
    error(("chai.tokenizer.load: '%s' is not a folder, and the Hub client (chai.hub) is not "
      .. "available to fetch it"):format(id), 3)
  end
  local sopts = {files = {"vocab.json", "merges.txt"},
                 optional = {"tokenizer_config.json", "special_tokens_map.json"}}
  for _, k in ipairs(hub_options) do sopts[k] = opts[k] end
  return (hub.snapshot(id, sopts))
end

local load_known = {add_bos = true}
for _, k in ipairs(hub_options) do load_known[k] = true end

-- chai.tokenizer.load(dir_or_id [, opts]) -> chai.Tokenizer.
-- A folder holds vocab.json and merges.txt, and optionally tokenizer_config.json and
-- special_tokens_map.json; anything else that looks like "org/name" is fetched from the Hub.
-- opts: add_bos (overrides tokenizer_config.json), and for Hub ids chai.hub's revision,
-- cache_dir, endpoint, token, offline, quiet.
function M.load(dir_or_id, opts)
  if type(dir_or_id) ~= "string" then
    error(("chai.tokenizer.load: expected a folder or a Hub repo id, got %s"):format(
      type(dir_or_id)), 2)
  end
  opts = check_options(opts, "chai.tokenizer.load", load_known)
  if opts.add_bos ~= nil and type(opts.add_bos) ~= "boolean" then
    error(("chai.tokenizer.load: option add_bos must be a boolean, got %s"):format(
      type(opts.add_bos)), 2)
  end
  local dir = dir_or_id
  if not C.is_dir(dir_or_id) then
    if not looks_like_hub_id(dir_or_id) then
      error(("chai.tokenizer.load: no such folder '%s'"):format(dir_or_id), 2)
    end
    dir = hub_folder(dir_or_id, opts)
  else
    for _, k in ipairs(hub_options) do
      if opts[k] ~= nil then
        error(("chai.tokenizer.load: option %s applies to Hub ids, and '%s' is a folder"):format(
          k, dir_or_id), 2)
      end
    end
  end
  -- through pcall so that the error points at the caller's line, not at this file
  local ok, tok = pcall(C.load, dir, {add_bos = opts.add_bos})
  if not ok then error(tok, 2) end
  return tok
end

local batch_known = {pad = true, max_length = true, truncation = true, add_bos = true,
                     tensors = true}

-- tok:batch(texts [, opts]) -> ids, mask: tables of B rows (or, with tensors=true, two i32
-- tensors of shape (B, T)), padded to the longest row with tok.pad_id; mask is 1 on tokens and 0
-- on padding.
--   pad        "right" (default) or "left" (for generation)
--   max_length rows longer than this are an error unless truncation is set
--   truncation true or "right" (keep the start), "left" (keep the end); the bos token is kept
--   add_bos    prepend tok.bos_id (default: tok.add_bos)
--   tensors    return chai.Tensor (i32) instead of tables
function methods.batch(tok, texts, opts)
  if type(texts) ~= "table" then
    error(("tok:batch: texts must be a table of strings, got %s"):format(type(texts)), 2)
  end
  opts = check_options(opts, "tok:batch", batch_known)
  local pad = opts.pad or "right"
  if pad ~= "left" and pad ~= "right" then
    error(("tok:batch: option pad must be \"left\" or \"right\", got %s"):format(tostring(pad)), 2)
  end
  local max_length = opts.max_length
  if max_length ~= nil and (math.type(max_length) ~= "integer" or max_length < 1) then
    error(("tok:batch: option max_length must be an integer >= 1, got %s"):format(
      tostring(max_length)), 2)
  end
  local trunc = opts.truncation
  if trunc == true then trunc = "right" end
  if trunc ~= nil and trunc ~= false and trunc ~= "right" and trunc ~= "left" then
    error(("tok:batch: option truncation must be true, false, \"right\" or \"left\", got %s"):format(
      tostring(trunc)), 2)
  end
  if trunc and not max_length then
    error("tok:batch: option truncation needs max_length", 2)
  end
  local add_bos = opts.add_bos
  if add_bos == nil then add_bos = tok.add_bos end
  if type(add_bos) ~= "boolean" then
    error(("tok:batch: option add_bos must be a boolean, got %s"):format(type(add_bos)), 2)
  end
  if opts.tensors ~= nil and type(opts.tensors) ~= "boolean" then
    error(("tok:batch: option tensors must be a boolean, got %s"):format(type(opts.tensors)), 2)
  end
  local bos = tok.bos_id
  if add_bos and not bos then error("tok:batch: add_bos: this tokenizer has no bos token", 2) end

  local n = #texts
  local rows, width = {}, 0
  local limit = max_length and max_length - (add_bos and 1 or 0)
  for i = 1, n do
    local text = texts[i]
    if type(text) ~= "string" then
      error(("tok:batch: texts[%d] is a %s, not a string"):format(i, type(text)), 2)
    end
    local ids = tok:encode(text, {add_bos = false})
    if limit and #ids > limit then
      if not trunc then
        error(("tok:batch: texts[%d] has %d tokens%s, more than max_length %d (pass truncation=true "
          .. "to cut it)"):format(i, #ids + (add_bos and 1 or 0), add_bos and " with bos" or "",
          max_length), 2)
      end
      local cut = {}
      local first = trunc == "left" and #ids - limit or 0
      for k = 1, limit do cut[k] = ids[first + k] end
      ids = cut
    end
    if add_bos then table.insert(ids, 1, bos) end
    rows[i] = ids
    if #ids > width then width = #ids end
  end

  local pad_id = tok.pad_id
  local ids_out, mask_out = {}, {}
  for i = 1, n do
    local row, r, m = rows[i], {}, {}
    local gap = width - #row
    if gap > 0 and not pad_id then
      error("tok:batch: rows need padding but this tokenizer has no pad token", 2)
    end
    local off = pad == "left" and gap or 0
    for k = 1, width do
      r[k], m[k] = pad_id, 0
    end
    for k = 1, #row do
      r[off + k], m[off + k] = row[k], 1
    end
    ids_out[i], mask_out[i] = r, m
  end
  if opts.tensors then
    if n == 0 or width == 0 then
      return core.zeros({n, width}, "i32"), core.zeros({n, width}, "i32")
    end
    return core.tensor(ids_out, "i32"), core.tensor(mask_out, "i32")
  end
  return ids_out, mask_out
end

return M
