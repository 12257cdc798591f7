-- docs/distributed.md's ```lua blocks on two ranks (mpirun -n 2): the same blocks that
-- tests/lua/test_distributed_docs.lua runs in one process, each asserting its own claims.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "../lua/?.lua;" .. package.path
local T = require "helper"

T.eq(require("chai").mpi.size(), 2, "two ranks")
T.run_doc_blocks("distributed.md", 3)
T.finish()
