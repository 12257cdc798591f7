-- chai.data.rows_api against the loopback server (tests/hub/hub_server, started here): 100-row
-- pages, the revision asked of the Hub, the JSON Lines cache under the HF cache, offline reads.
local data = require "chai.data"

local passed, failed = 0, 0
local function check(cond, what)
  if cond then passed = passed + 1 else failed = failed + 1; io.stderr:write("FAILED: " .. what .. "\n") end
end
local function check_error(fn, needle, what)
  local ok, err = pcall(fn)
  check(not ok and tostring(err):find(needle, 1, true) ~= nil, what .. " (got: " .. tostring(err) .. ")")
end

local server_bin = os.getenv("CHAI_HUB_SERVER") or
  ((os.getenv("CHAI_BUILD_DIR") or "build") .. "/tests/chai_test_hub_server")
local tmp = os.tmpname(); os.remove(tmp); os.execute("mkdir -p '" .. tmp .. "'")
local server = assert(io.popen("'" .. server_bin .. "' --log '" .. tmp .. "/server.log' --lifetime 60 --idle 30"))
local hub_port = (server:read("l") or ""):match("^(%d+)")
if not hub_port then error("the test server " .. server_bin .. " did not start") end
local url = "http://127.0.0.1:" .. hub_port
local opts = {endpoint = url, server = url, cache_dir = tmp .. "/cache"}

local rows, revision = data.rows_api("org/rows-data", "default", "validation", opts)
check(#rows == 250 and rows[1].sentence == "s0 " and rows[250].label == 1, "all 250 rows in order")
check(revision == "d0d0d0d0e1e1e1e1f2f2f2f2a3a3a3a3b4b4b4b4", "the revision comes from the Hub")
local log = assert(io.open(tmp .. "/server.log")):read("a")
local pages = 0
for len in log:gmatch("/rows%?[^ ]*length=(%d+)") do
  pages = pages + 1
  check(tonumber(len) <= 100, "pages hold at most 100 rows")
end
check(pages == 3, "250 rows take 3 pages (" .. pages .. ")")
local cached = tmp .. "/cache/datasets--org--rows-data/chai-rows/" .. revision .. "/default/validation.jsonl"
check(#data.read_jsonl(cached) == 250, "cached as JSON Lines under the revision")

-- offline: served from the cache, by the recorded ref or the explicit revision
local off = {offline = true, cache_dir = opts.cache_dir}
check(#data.rows_api("org/rows-data", "default", "validation", off) == 250, "offline hit through refs/main")
check_error(function() data.rows_api("org/rows-data", "default", "train", off) end,
            "not cached and HF_HUB_OFFLINE=1", "offline miss names what is missing")
-- a second online call reads the cache: no new /rows request
data.rows_api("org/rows-data", "default", "validation", opts)
local log2 = assert(io.open(tmp .. "/server.log")):read("a")
local pages2 = 0
for _ in log2:gmatch("/rows%?") do pages2 = pages2 + 1 end
check(pages2 == 3, "cached rows are not fetched again")
check_error(function() data.rows_api("org/missing", "default", "validation", opts) end, "404", "unknown dataset")

pcall(require("chai.hub").http_get, url .. "/__quit")
server:close()
os.execute("rm -rf '" .. tmp .. "'")
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
