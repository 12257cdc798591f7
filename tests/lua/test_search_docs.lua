-- docs/search.md is tested: every ```lua block in it runs and must not raise (the blocks assert
-- their own claims).
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"

T.run_doc_blocks("search.md", 3)
T.finish()
