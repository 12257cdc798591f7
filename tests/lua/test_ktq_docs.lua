-- docs/ktq.md is tested: every ```lua block in it runs, in its own environment, and must not raise
-- (the blocks assert their own claims). Errors point at the line in the .md file.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"

T.run_doc_blocks("ktq.md", 3)
T.finish()
