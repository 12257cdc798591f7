-- Draws training curves from chai.train's JSON Lines logs as an SVG figure (no plotting library):
-- the smoothed training loss and the evaluation metric against the step, one colour per run.
--
--   chai script experiments/plot_training.lua OUT.svg [--metric accuracy|loss] [--title T]
--                                             LABEL=LOG.jsonl ...
--
-- e.g. the figure in docs/benchmarks.md ("Training"):
--   chai script experiments/plot_training.lua docs/figures/sst2_training.svg \
--     "student s1=$M/logs/sst2-opt-student-s1.jsonl" "KD s1=$M/logs/sst2-opt-student-kd-s1.jsonl" ...
local json = require("chai.core").json
local cli = require "chai.cli"

local PROG = "plot_training.lua"
local USAGE = "usage: chai script experiments/plot_training.lua OUT.svg [--metric accuracy|loss] " ..
              "[--title T] LABEL=LOG.jsonl ..."
local given, words = cli.options({...}, {
  prog = PROG, usage = USAGE, positional = math.huge,
  options = {metric = function(v) return (v == "accuracy" or v == "loss") and v or nil, "accuracy or loss" end,
             title = "string"},
})
local metric, title = given.metric or "accuracy", given.title or "chai training"
local out = words[1]
local runs = {}
for k = 2, #words do
  local label, path = words[k]:match("^(.-)=(.+)$")
  if not label then cli.fail(PROG .. ": expected LABEL=LOG.jsonl, got '" .. words[k] .. "'", 2) end
  runs[#runs + 1] = {label = label, path = path}
end
if not out or #runs == 0 then cli.fail(PROG .. ": needs OUT.svg and at least one LABEL=LOG.jsonl (" .. USAGE .. ")", 2) end

for _, r in ipairs(runs) do
  r.loss, r.eval = {}, {}
  local ema, n = nil, 0
  local f, err = io.open(r.path, "rb")
  if not f then cli.fail(PROG .. ": cannot read the log " .. r.label .. "=" .. r.path .. ": " .. tostring(err)) end
  for line in f:lines() do
    local rec = json.decode(line)
    if rec.step == 1 and not rec.eval then -- a log appended to by a new run: keep the last run
      r.loss, r.eval, ema, n = {}, {}, nil, 0
    end
    if rec.eval and rec.eval[metric] then
      r.eval[#r.eval + 1] = {rec.step, rec.eval[metric]}
    elseif rec.loss and type(rec.loss) == "number" then
      ema = ema and 0.98 * ema + 0.02 * rec.loss or rec.loss
      n = n + 1
      if n % 10 == 0 then r.loss[#r.loss + 1] = {rec.step, ema} end
    end
  end
  f:close()
end

local W, H, pad = 900, 360, 50
local colors = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf",
                "#7f7f7f"}
local function bounds(key)
  local x1, y0, y1 = 0, math.huge, -math.huge
  for _, r in ipairs(runs) do
    for _, p in ipairs(r[key]) do
      x1 = math.max(x1, p[1])
      y0, y1 = math.min(y0, p[2]), math.max(y1, p[2])
    end
  end
  if y0 == math.huge then y0, y1 = 0, 1 end
  if y1 - y0 < 1e-9 then y1 = y0 + 1 end
  local m = 0.05 * (y1 - y0)
  return math.max(1, x1), y0 - m, y1 + m
end

local svg = {}
local function add(s, ...) svg[#svg + 1] = string.format(s, ...) end
add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
    .. 'font-size="12">', 2 * W / 2 + 40, H + 40)
add('<rect width="100%%" height="100%%" fill="white"/>')
add('<text x="%d" y="16" font-size="14">%s</text>', pad, title)
local function panel(x0, key, ylabel)
  local x1, y0, y1 = bounds(key)
  local pw, ph = W / 2 - pad - 10, H - 2 * pad
  local function px(x) return x0 + pad + pw * x / x1 end
  local function py(y) return 30 + ph - ph * (y - y0) / (y1 - y0) end
  add('<rect x="%g" y="30" width="%g" height="%g" fill="none" stroke="#888"/>', x0 + pad, pw, ph)
  for k = 0, 4 do
    local y = y0 + (y1 - y0) * k / 4
    add('<text x="%g" y="%g" text-anchor="end">%s</text>', x0 + pad - 4, py(y) + 4,
        metric == "accuracy" and key == "eval" and string.format("%.1f%%", 100 * y)
        or string.format("%.3f", y))
    local x = x1 * k / 4
    add('<text x="%g" y="%g" text-anchor="middle">%d</text>', px(x), 30 + ph + 16, math.floor(x))
  end
  add('<text x="%g" y="%g" text-anchor="middle">step</text>', x0 + pad + pw / 2, 30 + ph + 32)
  add('<text x="%g" y="26">%s</text>', x0 + pad, ylabel)
  for ri, r in ipairs(runs) do
    local pts = {}
    for _, p in ipairs(r[key]) do pts[#pts + 1] = string.format("%.1f,%.1f", px(p[1]), py(p[2])) end
    if #pts > 0 then
      add('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>',
          colors[(ri - 1) % #colors + 1], table.concat(pts, " "))
    end
  end
end
panel(0, "loss", "training loss (smoothed)")
panel(W / 2, "eval", "dev " .. metric)
for ri, r in ipairs(runs) do
  add('<text x="%d" y="%d" fill="%s">%s</text>', pad + (ri - 1) * 150 % (W - 100),
      H + 14 + 14 * ((ri - 1) * 150 // (W - 100)), colors[(ri - 1) % #colors + 1], r.label)
end
add("</svg>")
local f, err = io.open(out, "w")
if not f then cli.fail(PROG .. ": cannot write " .. out .. ": " .. tostring(err)) end
f:write(table.concat(svg, "\n"), "\n")
f:close()
print("wrote " .. out)
