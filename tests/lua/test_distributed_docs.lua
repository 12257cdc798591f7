-- docs/distributed.md is tested: every ```lua block runs (here in one process, a group of one;
-- tests/mpi/test_mpi_docs.lua runs them again on two ranks) and asserts its own claims.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"

T.run_doc_blocks("distributed.md", 3)
T.finish()
