-- Runs chai.search with the fake backend of tests/lua/search_fake.lua (no report, for predictable
-- file sizes): chai script search_fake_run.lua [search options]. Exits with the search's status.
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "../lua/?.lua;" .. package.path
local fake = require "search_fake"
-- SEARCH_FILL_ON=NAME SEARCH_FILL_DIR=DIR: after configuration NAME runs, fill DIR's file system.
local spec = {fill_disk_on = os.getenv("SEARCH_FILL_ON"), fill_dir = os.getenv("SEARCH_FILL_DIR")}
local status = require("chai.search").main({...}, {backend = fake.backend(spec), tty = false, report = false})
os.exit(status, true)
