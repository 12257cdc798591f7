-- docs/quant.md is tested: every ```lua block runs and asserts its own claims.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"

T.run_doc_blocks("quant.md", 2)
T.finish()
