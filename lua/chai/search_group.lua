-- The ranks of a search (docs/distributed.md#distributed-search): who decides, who runs which
-- configuration, and how the results come back to rank 1, which alone writes the output folder.
-- In one process (no mpirun, or chai built without MPI) it is a group of one and every call does
-- what the single search did, so lua/chai/search.lua has one code path.
--
-- Every rank must make the calls below in the same order (they are collectives); the search makes
-- them outside any pcall that could skip one, so a configuration that fails never leaves a rank
-- waiting.
local mpi = require "chai.mpi"
local cli = require "chai.cli"

local M = {}

local G = {}
G.__index = G

--- The group of this process: {rank =, size =} (rank 1 of 1 outside mpirun).
function M.new()
  return setmetatable({rank = mpi.rank(), size = mpi.size()}, G)
end

function G:distributed() return self.size > 1 end

--- Raises on every rank unless all ranks were given the same value (the options: a launcher that
--- passes other arguments to some ranks would make them search different spaces).
function G:agree(value, what)
  if self.size > 1 then mpi.agree(value, what) end
end

--- Raises a failure (chai.cli.fail) that every rank raises alike, marked `shared`: rank 1 prints
--- it, the others stay quiet (search.main).
function M.fail_shared(message, status)
  local _, err = pcall(cli.fail, message, status)
  err.shared = true
  error(err, 0)
end

--- Runs fn() on rank 1 and returns its value (JSON-able) on every rank. When fn raises on rank 1,
--- every rank raises the same failure: `to_failure(err)` → status, message (rank 1's view of it).
function G:decide(fn, to_failure)
  if self.size == 1 then return fn() end
  local out
  if self.rank == 1 then
    local ok, v = pcall(fn)
    if ok then
      out = {ok = true, value = v}
    else
      local status, message = to_failure(v)
      out = {ok = false, status = status, message = message}
    end
  end
  out = mpi.broadcast(out, 1)
  if not out.ok then M.fail_shared(out.message, out.status) end
  return out.value
end

--- Runs fn() on rank 1 first and on the others once rank 1 is done, so that what rank 1 prepares
--- and caches (the default model trained on first use, a Hub download) the others load instead of
--- racing it. settle(ok, value) on rank 1 turns its outcome into a JSON-able verdict that every
--- rank gets back. Returns ok, value (pcall's, of this rank's own call; the others do not call fn
--- when rank 1's verdict says so: verdict.go == false) and the verdict.
function G:in_turn(fn, settle)
  if self.size == 1 then
    local ok, v = pcall(fn)
    return ok, v, settle(ok, v)
  end
  local ok, v, verdict
  if self.rank == 1 then
    ok, v = pcall(fn)
    verdict = settle(ok, v)
  end
  verdict = mpi.broadcast(verdict, 1)
  if self.rank ~= 1 then
    if verdict.go then
      ok, v = pcall(fn)
    else
      ok, v = false, "rank 1 did not set up"
    end
  end
  return ok, v, verdict
end

--- This rank's share of the configurations to run (a list of {name =, ...}): the baseline (when
--- listed) on rank 1, the others dealt round robin (chai.mpi.deal), so neighbours in the canonical
--- order run on different ranks.
function G:share(configs)
  if self.size == 1 then return configs end
  local rest, first = {}, nil
  for _, c in ipairs(configs) do
    if c.name == "baseline" then first = c else rest[#rest + 1] = c end
  end
  local mine = mpi.deal(rest)
  if self.rank == 1 and first then table.insert(mine, 1, first) end
  return mine
end

--- Every rank's value on rank 1 ({value of rank 1, …}); nil on the others.
function G:collect(value)
  if self.size == 1 then return {value} end
  return mpi.gather(value, 1)
end

--- Rank 1's value on every rank.
function G:share_value(value)
  if self.size == 1 then return value end
  return mpi.broadcast(value, 1)
end

return M
