-- The report of a small search (the fake backend's: tests/lua/search_fake.lua) opened in headless
-- Chromium: no console or script errors, every chart's canvas has drawn pixels (the page checks
-- itself into <pre id="chart-check">), and a screenshot is written. Without Chromium or Chart.js
-- (Debian's chromium and libjs-chart.js, installed by scripts/setup.sh) the test says so and skips.
local T = require "helper"
local fake = require "search_fake"
local search = require "chai.search"
local report = require "chai.report"

if not report.chromium() then
  print("SKIP: no Chromium here (scripts/setup.sh installs Debian's chromium); the report is not rendered")
  return T.finish()
end
if not report.chartjs() then
  print("SKIP: no Chart.js here (scripts/setup.sh installs Debian's libjs-chart.js)")
  return T.finish()
end

local dir = T.tmpdir() .. "/search"
local out, err = fake.buffer(), fake.buffer()
local status = search.main({"--out", dir, "--configs", "chai_quant,chai_kd,chai_ktq,chai_target_quant_kd"},
                           {backend = fake.backend(), stdout = out, stderr = err, tty = false})
T.eq(status, 0, "the search ran: " .. err:text())
local shot = dir .. "/report.png"
local check, why = report.render(dir .. "/report.html", {screenshot = shot, width = 1200, height = 1600})
T.check(check ~= nil, "the page recorded its check: " .. tostring(why))
if check then
  T.eq(check.errors, {}, "no console or script errors")
  T.check(check.chartjs == true, "Chart.js is in the page")
  -- 2 scatters + 5 radars + 2 sensitivity methods + 2 elbow layers + 2 training charts
  T.eq(check.canvases, 13, "every chart has a canvas")
  T.eq(check.drawn, check.canvases, "every canvas has drawn pixels")
  T.eq(check.blank, {}, "no blank canvas")
end
local png = io.open(shot, "rb")
local head = png and png:read(8)
if png then png:close() end
T.eq(head, "\137PNG\r\n\26\n", "a PNG screenshot is written")

-- The page without Chart.js still opens (tables), and its check says what is missing.
local f = assert(io.open(dir .. "/report.html", "rb"))
local html = f:read("a")
f:close()
local stripped = html:gsub("<script>/%*!\n %* Chart%.js.-</script>", "", 1)
T.check(#stripped < #html, "the inlined Chart.js can be cut out")
local bare = dir .. "/bare.html"
T.write_bytes(bare, stripped)
check = report.render(bare)
T.check(check and check.chartjs == false and check.errors[1] == "Chart.js is not in this page", "no Chart.js: said so")
T.finish()
