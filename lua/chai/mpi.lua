-- chai.mpi: the ranks of a distributed run (MPI; see docs/distributed.md). Ranks are 1-based.
--
--   chai.mpi.available()      built with MPI (false after cmake -DCHAI_MPI=OFF)
--   chai.mpi.launched()       started by mpirun/srun? → bool, announced size (0 if unknown)
--   chai.mpi.init()           start MPI by hand (chai starts it by itself under mpirun/srun)
--   chai.mpi.initialized()    chai.mpi.rank() → 1..size    chai.mpi.size()    chai.mpi.barrier()
--   chai.mpi.allreduce(t, "sum"|"mean")  in place, in a fixed order (the same bits on every rank)
--   chai.mpi.broadcast(t, root)          a tensor: root's values into t on every rank
--   chai.mpi.broadcast(value, root)      any JSON-able value: returns root's value on every rank
--   chai.mpi.gather(value, root)         JSON-able values: {value of rank 1, …} on root, nil elsewhere
--   chai.mpi.sum({x, y, …})              sums over the ranks, in double, the same bits everywhere
--   chai.mpi.deal(items)                 this rank's share of a list: items, their positions
--   chai.mpi.shard(n)                    this rank's contiguous share of n rows: first, count
--   chai.mpi.agree(value, what)          raises on every rank unless all ranks hold equal values
--   chai.mpi.reducer{bucket_mb=8}        sums gradients in buckets (chai.train uses it)
--   chai.mpi.abort(message[, code])      ends every rank
-- Without MPI, or outside a launcher, the group is this process alone: rank 1 of 1, collectives
-- return their input. Every rank must make the same collective calls in the same order; a call
-- that the ranks make differently (another root, another size) raises the same error on all.
local core = require "chai.core"
local C = core.mpi
local json = core.json

local M = {}

M.available = C.available
M.launched = C.launched
M.initialized = C.initialized
M.rank = C.rank
M.size = C.size
M.barrier = C.barrier
M.allreduce = C.allreduce
M.sum = C.sum
M.abort = C.abort

function M.init() C.init() end

local function encode(value, fname)
  local ok, text = pcall(json.encode, value)
  if not ok then error(fname .. ": the value is not JSON-able: " .. tostring(text), 3) end
  return text
end

local function decode(text)
  local v = json.decode(text)
  if v == json.null then return nil end
  return v
end

function M.broadcast(value, root)
  if core.is_tensor(value) then return C.broadcast(value, root) end
  root = root or 1
  local text = C.rank() == root and encode(value, "chai.mpi.broadcast") or nil
  return decode(C.broadcast_string(text, root))
end

function M.gather(value, root)
  local parts = C.gather_string(encode(value, "chai.mpi.gather"), root or 1)
  if not parts then return nil end
  local out = {}
  for r, text in ipairs(parts) do out[r] = decode(text) end
  return out
end

--- The items of this rank: every size-th one, starting at the rank's number (round robin, so
--- neighbours in a list sorted by cost land on different ranks). Returns the items and their
--- positions in the list.
function M.deal(items)
  local n, r = C.size(), C.rank()
  local mine, at = {}, {}
  for i = r, #items, n do
    mine[#mine + 1] = items[i]
    at[#at + 1] = i
  end
  return mine, at
end

--- This rank's contiguous part of n rows: the first row (1-based) and the count (0 when n is
--- smaller than the group). The first n % size ranks take one row more.
function M.shard(n, rank, size)
  size = size or C.size()
  rank = rank or C.rank()
  local base, extra = n // size, n % size
  local k = rank - 1
  return k * base + math.min(k, extra) + 1, base + (k < extra and 1 or 0)
end

-- A canonical text of a value (keys sorted: table order differs between processes).
local function canonical(v, out)
  local t = type(v)
  if t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      if type(a) ~= type(b) then return type(a) < type(b) end
      return a < b
    end)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      out[#out + 1] = string.format("%q=", k)
      canonical(v[k], out)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  elseif t == "number" then
    out[#out + 1] = math.type(v) == "integer" and tostring(v) or string.format("%a", v)
  elseif t == "string" then
    out[#out + 1] = string.format("%q", v)
  else
    out[#out + 1] = tostring(t == "boolean" and v or t)
  end
  return out
end

--- Raises the same error on every rank unless every rank's value is equal to rank 1's (tables
--- compared by content; functions and userdata only by type). `what` names the value.
function M.agree(value, what)
  if C.size() == 1 then return end
  local mine = table.concat(canonical(value, {}))
  local first = C.broadcast_string(C.rank() == 1 and mine or nil, 1)
  local bad = C.sum({mine == first and 0 or C.rank()})
  if bad[1] ~= 0 then
    local ranks = M.gather(mine ~= first and C.rank() or 0, 1)
    local list = {}
    for _, r in ipairs(ranks or {}) do
      if r ~= 0 then list[#list + 1] = tostring(r) end
    end
    local names = M.broadcast(table.concat(list, ", "), 1)
    error(string.format("chai.mpi: the ranks disagree on %s (rank%s %s differ%s from rank 1)", what,
                        names:find(",") and "s" or "", names, names:find(",") and "" or "s"), 2)
  end
end

function M.reducer(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "bucket_mb" then error("chai.mpi.reducer: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local mb = opts.bucket_mb or 8
  if type(mb) ~= "number" or mb <= 0 then
    error("chai.mpi.reducer: bucket_mb must be a positive number, got " .. tostring(mb), 2)
  end
  return C.reducer(math.max(4096, math.floor(mb * 2 ^ 20)))
end

return M
