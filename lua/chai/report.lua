-- chai.report: a search's report from its output folder. report.html is one self-contained file
-- that opens offline: the tables, and charts drawn by Chart.js (Debian's libjs-chart.js, its file
-- inlined; no CDN): a radar per configuration over normalised metrics, a heat-map table of
-- configurations × metrics, accuracy against throughput and against weight bytes with the Pareto
-- front drawn, per-layer sensitivity bars per method, CHAI's elbow curves per layer with the chosen
-- k, and the training curves of the target and kd steps. report.md has the tables in markdown.
--
--   chai.report.write(chai.search.store.open(dir), {markdown = true})
--   chai.report.html(data)  chai.report.markdown(data)  chai.report.collect(store) --> data
--
-- The page checks itself: after drawing it writes into <pre id="chart-check"> a JSON object
-- {canvases =, drawn =, blank = {...ids}, errors = {...}, chartjs = bool}, which the browser test
-- reads (tests/lua/test_report_browser.lua).
local core = require "chai.core"
local json = core.json
local pick = require "chai.search_pick"
local store_mod = require "chai.search_store"

local M = {}

--- Where Chart.js is looked for: $CHAI_CHARTJS, then Debian's libjs-chart.js (the UMD build).
M.chartjs_paths = {"/usr/share/javascript/chart.js/chart.umd.js", "/usr/share/javascript/chart.js/chart.min.js",
                   "/usr/share/javascript/chart.js/Chart.min.js"}

--- The text of Chart.js and its path, or nil and the places looked in.
function M.chartjs()
  local paths = {}
  local env = os.getenv("CHAI_CHARTJS")
  if env and env ~= "" then paths[1] = env end
  for _, p in ipairs(M.chartjs_paths) do paths[#paths + 1] = p end
  for _, p in ipairs(paths) do
    local text = store_mod.read_all(p)
    if text and #text > 0 then return text, p end
  end
  return nil, table.concat(paths, ", ")
end

-- The metrics the heat map and the radars show: key in pick.values, label, which way is better,
-- and how a value is written.
M.metrics = {
  {key = "accuracy", label = "accuracy", better = "max", fmt = "pct"},
  {key = "diff", label = "Δ accuracy vs baseline", better = "max", fmt = "pts"},
  {key = "throughput", label = "sentences/s @16", better = "max", fmt = "%.0f"},
  {key = "throughput64", label = "sentences/s @64", better = "max", fmt = "%.0f"},
  {key = "latency", label = "latency p50 ms", better = "min", fmt = "%.2f"},
  {key = "weight_bytes", label = "weight MB", better = "min", fmt = "mb"},
  {key = "kv", label = "KV bytes/token", better = "min", fmt = "%.0f"},
  {key = "rss", label = "peak RSS MB", better = "min", fmt = "mb"},
  {key = "minutes", label = "build minutes", better = "min", fmt = "%.2f"},
}

local function fmt(v, how)
  if v == nil then return "–" end
  if how == "pct" then return ("%.2f%%"):format(100 * v) end
  if how == "pts" then return ("%+.2f pts"):format(100 * v) end
  if how == "mb" then return ("%.2f"):format(v / 1e6) end
  return (how):format(v)
end

-- ---------------------------------------------------------------------------------------------
-- What the report shows, collected from the folder

local function find_record(result, step)
  for _, r in ipairs(type(result.records) == "table" and result.records or {}) do
    if type(r) == "table" and r.step == step then return r end
  end
  return nil
end

--- The report's data from an output folder (a search_store): meta, results (latest per name, in
--- the order of opts.configs or of meta.configs), the chosen configuration, the front, sensitivity,
--- CHAI's elbow curves, the training curves.
function M.collect(store, opts)
  opts = opts or {}
  local meta = store:read_meta() or {}
  local by = store_mod.latest((store:read_results()))
  local order = {}
  if opts.configs then for _, c in ipairs(opts.configs) do order[#order + 1] = c.name end
  else for _, n in ipairs(meta.configs or {}) do order[#order + 1] = n end end
  local results, seen = {}, {}
  for _, n in ipairs(order) do
    if by[n] and not seen[n] then results[#results + 1] = by[n]; seen[n] = true end
  end
  local rest = {}
  for n, r in pairs(by) do if not seen[n] then rest[#rest + 1] = r end end
  table.sort(rest, function(a, b) return a.name < b.name end)
  for _, r in ipairs(rest) do results[#results + 1] = r end
  local criterion = meta.criterion or "pareto"
  local chosen, why = pick.best(results, criterion)
  local front = {}
  for _, r in ipairs(pick.front(results)) do front[r.name] = true end
  -- CHAI's elbow curves: the chai step of chai_base (else the first result that has one).
  local elbow, heads = nil, nil
  for _, name in ipairs({"chai_base"}) do
    local r = by[name]
    local rec = r and find_record(r, "chai")
    if rec then elbow = rec end
  end
  if not elbow then
    for _, r in ipairs(results) do
      local rec = find_record(r, "chai")
      if rec and not elbow then elbow = rec end
    end
  end
  local curves = {}
  if elbow then
    for _, c in ipairs(type(elbow.curves) == "table" and elbow.curves or {}) do
      if type(c.inertia) == "table" and #c.inertia > 0 then
        curves[#curves + 1] = {layer = c.layer, inertia = c.inertia, elbow = c.elbow, rule = c.rule,
                               k = c.k or (type(elbow.k) == "table" and elbow.k[c.layer]) or c.elbow}
        heads = math.max(heads or 0, #c.inertia)
      end
    end
  end
  -- Training curves of the target and kd steps, one line per configuration.
  local training = {target = {}, kd = {}}
  for _, r in ipairs(results) do
    for _, step in ipairs({"target", "kd"}) do
      local rec = r.status == "ok" and find_record(r, step)
      local curve = rec and type(rec.training) == "table" and rec.training.curve
      if type(curve) == "table" and type(curve.step) == "table" and #curve.step > 0 then
        training[step][#training[step] + 1] = {config = r.name, step = curve.step, loss = curve.loss,
                                               evals = rec.training.heldout_evals}
      end
    end
  end
  return {meta = meta, results = results, criterion = criterion, chosen = chosen, why = why,
          front = front, sensitivity = store:read_sensitivity(), curves = curves, heads = heads,
          training = training, dir = store.dir, best_dir = store.best_dir,
          baseline = by.baseline}
end

-- ---------------------------------------------------------------------------------------------
-- HTML

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                       ['"'] = "&quot;", ["'"] = "&#39;"}))
end
M.escape = esc

-- A markdown table (pick's) as an HTML table; cells escaped.
local function md_table_html(md, class)
  local rows = {}
  for line in md:gmatch("[^\n]+") do
    if not line:match("^|%-") then
      local cells = {}
      for cell in line:gmatch("|%s*([^|]*)") do cells[#cells + 1] = cell:gsub("%s+$", "") end
      if cells[#cells] == "" then cells[#cells] = nil end
      rows[#rows + 1] = cells
    end
  end
  local out = {('<table class="%s">'):format(class or "")}
  for i, cells in ipairs(rows) do
    local tag = i == 1 and "th" or "td"
    local tr = {"<tr>"}
    for _, c in ipairs(cells) do tr[#tr + 1] = ("<%s>%s</%s>"):format(tag, esc(c), tag) end
    tr[#tr + 1] = "</tr>"
    out[#out + 1] = table.concat(tr)
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

-- The heat map: configurations × metrics, each cell coloured by its rank within its column
-- (green = the best configuration on that metric, red = the worst).
local function heatmap_html(data)
  local rows = {}
  for _, r in ipairs(data.results) do
    local v = pick.values(r)
    if v then rows[#rows + 1] = {r = r, v = v} end
  end
  local out = {'<table class="heat"><tr><th>configuration</th>'}
  for _, m in ipairs(M.metrics) do out[#out + 1] = "<th>" .. esc(m.label) .. "</th>" end
  out[#out + 1] = "</tr>"
  local range = {}
  for _, m in ipairs(M.metrics) do
    local lo, hi = math.huge, -math.huge
    for _, x in ipairs(rows) do
      local y = x.v[m.key]
      if y then lo, hi = math.min(lo, y), math.max(hi, y) end
    end
    range[m.key] = {lo, hi}
  end
  for _, x in ipairs(rows) do
    local tr = {"<tr><th>" .. esc(x.r.name) .. "</th>"}
    for _, m in ipairs(M.metrics) do
      local y = x.v[m.key]
      if y == nil then
        tr[#tr + 1] = '<td class="na">–</td>'
      else
        local lo, hi = range[m.key][1], range[m.key][2]
        local good = hi > lo and (y - lo) / (hi - lo) or 1
        if m.better == "min" then good = hi > lo and (hi - y) / (hi - lo) or 1 end
        local hue = math.floor(120 * good + 0.5) -- 0 red .. 120 green
        tr[#tr + 1] = ('<td style="background:hsl(%d,65%%,82%%)" title="%s">%s</td>'):format(hue, esc(m.label), esc(fmt(y, m.fmt)))
      end
    end
    tr[#tr + 1] = "</tr>"
    out[#out + 1] = table.concat(tr)
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

--- Weight bytes by format (f32, int8, int4, …) of each configuration, as a markdown table (nil when
--- no result has them).
function M.formats_table(results)
  local formats, seen, rows = {}, {}, {}
  for _, r in ipairs(results) do
    local wb = r.status == "ok" and type(r.metrics) == "table" and r.metrics.weight_bytes
    local by = type(wb) == "table" and type(wb.by_format) == "table" and wb.by_format or nil
    if by then
      rows[#rows + 1] = {name = r.name, by = by, total = wb.total}
      for f in pairs(by) do if not seen[f] then seen[f] = true; formats[#formats + 1] = f end end
    end
  end
  if #rows == 0 then return nil end
  table.sort(formats)
  local head, rule = {"| configuration"}, {"|---"}
  for _, f in ipairs(formats) do head[#head + 1] = " | " .. f .. " MB"; rule[#rule + 1] = "|---" end
  local lines = {table.concat(head) .. " | total MB |", table.concat(rule) .. "|---|"}
  for _, x in ipairs(rows) do
    local cells = {"| " .. x.name}
    for _, f in ipairs(formats) do cells[#cells + 1] = x.by[f] and (" | %.2f"):format(x.by[f] / 1e6) or " | –" end
    cells[#cells + 1] = x.total and (" | %.2f |"):format(x.total / 1e6) or " | – |"
    lines[#lines + 1] = table.concat(cells)
  end
  return table.concat(lines, "\n")
end

-- What the charts are drawn from (embedded as JSON).
local function chart_data(data)
  local configs = {}
  for _, r in ipairs(data.results) do
    local v = pick.values(r)
    if v then
      configs[#configs + 1] = {name = r.name, steps = pick.steps_text(r), front = data.front[r.name] or false,
                               chosen = data.chosen and data.chosen.name == r.name or false, v = v}
    end
  end
  local metrics = {}
  for i, m in ipairs(M.metrics) do metrics[i] = {key = m.key, label = m.label, better = m.better} end
  local sens = {}
  local s = data.sensitivity
  for _, x in ipairs(s and type(s.methods) == "table" and s.methods or {}) do
    if type(x.scores) == "table" and #x.scores > 0 then sens[#sens + 1] = {method = x.method, scores = x.scores} end
  end
  return store_mod.plain({configs = store_mod.array(configs), metrics = metrics, sensitivity = store_mod.array(sens),
                          curves = store_mod.array(data.curves), heads = data.heads,
                          training = {target = store_mod.array(data.training.target), kd = store_mod.array(data.training.kd)}})
end

-- The drawing code (plain ES2017, Chart.js 3 and 4 alike). Every chart is drawn without
-- animation so the check at the end sees its pixels.
local SCRIPT = [==[
(function () {
  "use strict";
  var check = {canvases: 0, drawn: 0, blank: [], errors: [], chartjs: typeof Chart !== "undefined"};
  window.addEventListener("error", function (e) { check.errors.push(String(e.message || e)); });
  var origError = console.error;
  console.error = function () { check.errors.push(Array.prototype.join.call(arguments, " ")); origError.apply(console, arguments); };
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
  function color(i) { return palette[i % palette.length]; }
  function el(tag, attrs, parent) {
    var e = document.createElement(tag);
    for (var k in attrs) { if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]); }
    if (parent) parent.appendChild(e);
    return e;
  }
  function canvasIn(parentId, id, title, w, h) {
    var box = el("figure", {"class": "chart"}, document.getElementById(parentId));
    if (title) el("figcaption", {text: title}, box);
    return el("canvas", {id: id, width: w || 480, height: h || 320}, box);
  }
  var made = [];
  function chart(canvas, cfg) {
    cfg.options = cfg.options || {};
    cfg.options.animation = false;
    cfg.options.responsive = false;
    cfg.options.devicePixelRatio = 1;
    made.push(new Chart(canvas.getContext("2d"), cfg));
  }
  function mb(x) { return x / 1e6; }
  // Accuracy against throughput and against weight bytes; the front drawn as a line.
  function scatter(id, title, xkey, xlabel, xscale, parent) {
    var pts = D.configs.filter(function (c) { return c.v[xkey] != null && c.v.accuracy != null; });
    var sets = pts.map(function (c, i) {
      return {label: c.name, data: [{x: xscale(c.v[xkey]), y: 100 * c.v.accuracy}], backgroundColor: color(i),
              borderColor: c.chosen ? "#000" : color(i), borderWidth: c.chosen ? 3 : 1,
              pointRadius: c.front ? 7 : 4, pointStyle: c.front ? "rectRot" : "circle"};
    });
    var front = pts.filter(function (c) { return c.front; })
      .map(function (c) { return {x: xscale(c.v[xkey]), y: 100 * c.v.accuracy}; })
      .sort(function (a, b) { return a.x - b.x; });
    sets.push({label: "Pareto front", data: front, type: "line", showLine: true, fill: false,
               borderColor: "#444", borderDash: [6, 4], pointRadius: 0, borderWidth: 1.5});
    chart(canvasIn(parent, id, title), {type: "scatter", data: {datasets: sets}, options: {
      plugins: {legend: {position: "right", labels: {boxWidth: 10, font: {size: 10}}}},
      scales: {x: {title: {display: true, text: xlabel}}, y: {title: {display: true, text: "accuracy %"}}}}});
  }
  function draw() {
    if (!check.chartjs) { check.errors.push("Chart.js is not in this page"); return; }
    scatter("scatter-throughput", "Accuracy against throughput (batch 16)", "throughput", "sentences/s", function (x) { return x; }, "scatters");
    scatter("scatter-bytes", "Accuracy against weight bytes", "weight_bytes", "weight MB", mb, "scatters");
    // A radar per configuration: each metric as a fraction of the best configuration's.
    var radarKeys = ["accuracy", "throughput", "throughput64", "latency", "weight_bytes", "kv", "rss"];
    var labels = {}; D.metrics.forEach(function (m) { labels[m.key] = m; });
    var best = {};
    radarKeys.forEach(function (k) {
      var vals = D.configs.map(function (c) { return c.v[k]; }).filter(function (x) { return x != null && x > 0; });
      best[k] = labels[k].better === "max" ? Math.max.apply(null, vals) : Math.min.apply(null, vals);
    });
    D.configs.forEach(function (c, i) {
      var vals = radarKeys.map(function (k) {
        var x = c.v[k];
        if (x == null || !(x > 0) || !isFinite(best[k])) return 0;
        return labels[k].better === "max" ? x / best[k] : best[k] / x;
      });
      chart(canvasIn("radars", "radar-" + i, c.name + (c.chosen ? " (chosen)" : ""), 300, 250), {type: "radar",
        data: {labels: radarKeys.map(function (k) { return labels[k].label; }),
               datasets: [{label: c.name, data: vals, borderColor: color(i), backgroundColor: color(i) + "33", pointRadius: 2}]},
        options: {plugins: {legend: {display: false}}, scales: {r: {min: 0, max: 1, ticks: {stepSize: 0.25}}}}});
    });
    // Sensitivity of each layer, per method.
    D.sensitivity.forEach(function (s, i) {
      chart(canvasIn("sensitivity", "sensitivity-" + i, "Sensitivity by layer: " + s.method), {type: "bar",
        data: {labels: s.scores.map(function (_, l) { return "layer " + (l + 1); }),
               datasets: [{label: s.method, data: s.scores, backgroundColor: color(i)}]},
        options: {plugins: {legend: {display: false}}}});
    });
    // CHAI's elbow: k-means inertia against k per layer, the chosen k marked.
    D.curves.forEach(function (c, i) {
      var ks = c.inertia.map(function (_, j) { return j + 1; });
      var chosen = c.inertia.map(function (y, j) { return j + 1 === c.k ? y : null; });
      chart(canvasIn("elbows", "elbow-" + i, "Layer " + c.layer + ": inertia against k (chosen k = " + c.k + ")"), {type: "line",
        data: {labels: ks, datasets: [
          {label: "inertia", data: c.inertia, borderColor: color(0), pointRadius: 3, fill: false},
          {label: "chosen k", data: chosen, borderColor: "#d62728", backgroundColor: "#d62728", pointRadius: 8, showLine: false}]},
        options: {scales: {x: {title: {display: true, text: "clusters k"}}, y: {title: {display: true, text: "k-means inertia"}}}}});
    });
    // Training curves of the target and kd steps.
    ["target", "kd"].forEach(function (step) {
      var runs = D.training[step];
      if (!runs.length) return;
      chart(canvasIn("training", "training-" + step, "Training loss of the " + step + " step"), {type: "line",
        data: {datasets: runs.map(function (r, i) {
          return {label: r.config, data: r.step.map(function (s, j) { return {x: s, y: r.loss[j]}; }),
                  borderColor: color(i), pointRadius: 0, borderWidth: 1.5, fill: false};
        })},
        options: {parsing: false, plugins: {legend: {position: "right", labels: {boxWidth: 10, font: {size: 10}}}},
                  scales: {x: {type: "linear", title: {display: true, text: "step"}}, y: {title: {display: true, text: "loss"}}}}});
    });
  }
  try { draw(); } catch (e) { check.errors.push("drawing: " + (e && e.stack ? e.stack : e)); }
  // The self-check: every canvas must hold drawn (non-transparent) pixels.
  var canvases = document.querySelectorAll("canvas");
  check.canvases = canvases.length;
  canvases.forEach(function (c) {
    var px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data, n = 0;
    for (var i = 3; i < px.length; i += 4) if (px[i] !== 0) n++;
    if (n > 0) check.drawn++; else check.blank.push(c.id);
  });
  var out = document.getElementById("chart-check");
  out.textContent = JSON.stringify(check);
  document.body.setAttribute("data-charts", check.errors.length === 0 && check.blank.length === 0 ? "ok" : "bad");
})();
]==]

local CSS = [[
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555;margin:0 0 12px}.chosen{background:#eef6ee;border:1px solid #9c9;padding:10px 14px;border-radius:6px}
table{border-collapse:collapse;margin:6px 0;font-size:12.5px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.heat td{min-width:70px}.na{color:#999}
.charts{display:flex;flex-wrap:wrap;gap:14px}figure.chart{margin:0;border:1px solid #e3e3e3;padding:6px;border-radius:4px}
figcaption{font-size:12px;color:#444;margin-bottom:4px}td:nth-child(2){text-align:left}
.note{color:#666;font-size:12.5px}pre#chart-check{display:none}
]]

--- The HTML page for collected data (M.collect). chartjs: the library's text (nil: the page says
--- the charts need libjs-chart.js and shows the tables only).
function M.html(data, chartjs)
  local meta = data.meta
  local title = ("chai search: %s on %s"):format(tostring(meta.model or "?"), tostring(meta.task or "?"))
  local machine = meta.machine or {}
  local parts = {}
  local function add(s) parts[#parts + 1] = s end
  add("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
  add("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">")
  add("<title>" .. esc(title) .. "</title><style>" .. CSS .. "</style></head><body>")
  add("<h1>" .. esc(title) .. "</h1>")
  local started = meta.started and os.date("%Y-%m-%d %H:%M", meta.started) or "?"
  add(("<p class=\"meta\">started %s · criterion <b>%s</b> · seed %s%s · %d configurations measured · "
       .. "%s, %s threads, OpenBLAS %s · chai %s%s</p>"):format(
       esc(started), esc(data.criterion), esc(meta.seed or "?"), meta.quick and " · --quick" or "",
       #data.results, esc(machine.cpu or "?"), esc(machine.threads or "?"), esc(machine.blas_core or "?"),
       esc(meta.chai_version or "?"), meta.git_commit and (" (" .. esc(meta.git_commit):sub(1, 12) .. ")") or ""))
  if data.chosen then
    local v = pick.values(data.chosen)
    add(("<div class=\"chosen\"><b>Chosen (%s): %s</b> — %s. Accuracy %s (%s vs the unmodified model), "
         .. "%s sentences/s at batch 16, %s MB of weights, %s KV bytes per token. Saved in <code>best/</code>, "
         .. "which <code>chai.opt.load</code> opens.</div>"):format(
         esc(data.criterion), esc(data.chosen.name), esc(data.why or ""), fmt(v.accuracy, "pct"), fmt(v.diff, "pts"),
         fmt(v.throughput, "%.0f"), fmt(v.weight_bytes, "mb"), fmt(v.kv, "%.0f")))
  else
    add("<div class=\"chosen\">No configuration has finished with measurements yet.</div>")
  end
  add("<h2>Results</h2>")
  add("<p class=\"note\">★ marks the Pareto front of accuracy, throughput at batch 16 and weight bytes. "
      .. "Δ is the paired difference against the unmodified model on the same validation rows, with its "
      .. "paired-bootstrap 95% interval; ratios are against the baseline row.</p>")
  add(md_table_html(pick.table(data.results, data.baseline), "results"))
  add("<h2>Best configuration per criterion</h2>")
  add(md_table_html(pick.best_table(data.results, data.criterion), "best"))
  local ft = M.formats_table(data.results)
  if ft then
    add("<h2>Weights by format</h2>")
    add(md_table_html(ft, "formats"))
  end
  add("<h2>Heat map</h2><p class=\"note\">Each column is coloured by rank: green is the best "
      .. "configuration on that metric, red the worst (higher is better for accuracy and throughput, "
      .. "lower for the rest).</p>")
  add(heatmap_html(data))
  if not chartjs then
    add("<p class=\"note\"><b>No charts:</b> Chart.js was not found (install Debian's libjs-chart.js, "
        .. "or point CHAI_CHARTJS at chart.umd.js) when this report was written.</p>")
  end
  add("<h2>Accuracy, throughput and size</h2><div class=\"charts\" id=\"scatters\"></div>")
  add("<h2>Each configuration</h2><p class=\"note\">Each axis is the configuration's figure as a fraction "
      .. "of the best configuration's (1 = the best; latency, bytes and RSS inverted so that outward is "
      .. "better).</p><div class=\"charts\" id=\"radars\"></div>")
  add("<h2>Layer sensitivity</h2><p class=\"note\">Scores of the unmodified model per layer by each method "
      .. "of chai.ktq.sensitivity (higher = more sensitive); quant keeps the most sensitive layers in "
      .. "higher precision and target fine-tunes them.</p><div class=\"charts\" id=\"sensitivity\"></div>")
  local missing = {}
  for _, x in ipairs(data.sensitivity and type(data.sensitivity.methods) == "table" and data.sensitivity.methods or {}) do
    if type(x.scores) ~= "table" or #x.scores == 0 then
      missing[#missing + 1] = esc(x.method) .. ": " .. esc(x.error or "no scores")
    end
  end
  if #missing > 0 then add("<p class=\"note\">Not measured: " .. table.concat(missing, "; ") .. ".</p>") end
  if not data.sensitivity then add("<p class=\"note\">No sensitivity was measured in this search.</p>") end
  add("<h2>CHAI: elbow curves</h2><p class=\"note\">k-means inertia of each layer's heads against the "
      .. "number of clusters; the red point is the k the plan uses (k = the head count leaves a layer "
      .. "dense).</p><div class=\"charts\" id=\"elbows\"></div>")
  add("<h2>Training curves</h2><div class=\"charts\" id=\"training\"></div>")
  add("<h2>Pareto front</h2>")
  add(md_table_html(pick.front_table(data.results), "front"))
  add("<h2>Machine</h2><table class=\"machine\">")
  for _, k in ipairs({"cpu", "vendor", "simd", "features", "blas_core", "blas_library", "threads", "chai_version",
                      "git_commit", "host"}) do
    if machine[k] ~= nil then add(("<tr><th>%s</th><td>%s</td></tr>"):format(esc(k), esc(machine[k]))) end
  end
  if type(machine.kernels) == "table" then
    local ks = {}
    for f, k in pairs(machine.kernels) do ks[#ks + 1] = f .. ": " .. tostring(k) end
    table.sort(ks)
    add(("<tr><th>kernels</th><td>%s</td></tr>"):format(esc(table.concat(ks, ", "))))
  end
  add("</table>")
  add("<pre id=\"chart-check\"></pre>")
  local payload = json.encode(chart_data(data)):gsub("</", "<\\/")
  add("<script type=\"application/json\" id=\"report-data\">" .. payload .. "</script>")
  if chartjs then add("<script>" .. chartjs:gsub("</script", "<\\/script") .. "</script>") end
  add("<script>" .. SCRIPT .. "</script>")
  add("</body></html>\n")
  return table.concat(parts, "\n")
end

-- ---------------------------------------------------------------------------------------------
-- Markdown

--- report.md for collected data: the tables, the sensitivity per layer, CHAI's k per layer and the
--- training summary (the charts are in report.html).
function M.markdown(data)
  local meta = data.meta
  local out = {("# chai search: %s on %s"):format(tostring(meta.model or "?"), tostring(meta.task or "?")), ""}
  local machine = meta.machine or {}
  out[#out + 1] = ("Started %s, criterion **%s**, seed %s%s; %s, %s threads, OpenBLAS %s; chai %s%s."):format(
    meta.started and os.date("%Y-%m-%d %H:%M", meta.started) or "?", data.criterion, tostring(meta.seed or "?"),
    meta.quick and ", --quick" or "", tostring(machine.cpu or "?"), tostring(machine.threads or "?"),
    tostring(machine.blas_core or "?"), tostring(meta.chai_version or "?"),
    meta.git_commit and (" (" .. tostring(meta.git_commit):sub(1, 12) .. ")") or "")
  out[#out + 1] = ""
  if data.chosen then
    out[#out + 1] = ("**Chosen (%s): %s** — %s. Saved in `best/` (chai.opt.load opens it)."):format(
      data.criterion, data.chosen.name, data.why or "")
    out[#out + 1] = ""
  end
  out[#out + 1] = "## Results"
  out[#out + 1] = ""
  out[#out + 1] = pick.table(data.results, data.baseline)
  out[#out + 1] = ""
  out[#out + 1] = "★: on the Pareto front (accuracy, throughput at batch 16, weight bytes)."
  out[#out + 1] = ""
  out[#out + 1] = "## Best configuration per criterion"
  out[#out + 1] = ""
  out[#out + 1] = pick.best_table(data.results, data.criterion)
  out[#out + 1] = ""
  local ft = M.formats_table(data.results)
  if ft then
    out[#out + 1] = "## Weights by format"
    out[#out + 1] = ""
    out[#out + 1] = ft
    out[#out + 1] = ""
  end
  out[#out + 1] = "## Pareto front"
  out[#out + 1] = ""
  out[#out + 1] = pick.front_table(data.results)
  local s = data.sensitivity
  if s and type(s.methods) == "table" and #s.methods > 0 then
    out[#out + 1] = ""
    out[#out + 1] = "## Layer sensitivity (unmodified model)"
    out[#out + 1] = ""
    local n = 0
    for _, x in ipairs(s.methods) do if type(x.scores) == "table" then n = math.max(n, #x.scores) end end
    local head, rule = {"| method"}, {"|---"}
    for l = 1, n do head[#head + 1] = " | layer " .. l; rule[#rule + 1] = "|---" end
    out[#out + 1] = table.concat(head) .. " |"
    out[#out + 1] = table.concat(rule) .. "|"
    for _, x in ipairs(s.methods) do
      local cells = {"| " .. tostring(x.method)}
      if type(x.scores) == "table" and #x.scores > 0 then
        for l = 1, n do cells[#cells + 1] = x.scores[l] and (" | %.4g"):format(x.scores[l]) or " | –" end
      else
        cells[#cells + 1] = " | not measured: " .. tostring(x.error or "?"):gsub("|", "/")
      end
      out[#out + 1] = table.concat(cells) .. " |"
    end
  end
  if #data.curves > 0 then
    out[#out + 1] = ""
    out[#out + 1] = "## CHAI: clusters per layer"
    out[#out + 1] = ""
    out[#out + 1] = "| layer | chosen k | elbow | rule | inertia at k = 1 … H |"
    out[#out + 1] = "|---|---|---|---|---|"
    for _, c in ipairs(data.curves) do
      local xs = {}
      for i, y in ipairs(c.inertia) do xs[i] = ("%.4g"):format(y) end
      out[#out + 1] = ("| %s | %s | %s | %s | %s |"):format(tostring(c.layer), tostring(c.k), tostring(c.elbow),
                                                       tostring(c.rule or ""), table.concat(xs, ", "))
    end
  end
  for _, step in ipairs({"target", "kd"}) do
    local runs = data.training[step]
    if #runs > 0 then
      out[#out + 1] = ""
      out[#out + 1] = ("## Training: the %s step"):format(step)
      out[#out + 1] = ""
      out[#out + 1] = "| configuration | steps | first loss | last loss |"
      out[#out + 1] = "|---|---|---|---|"
      for _, r in ipairs(runs) do
        out[#out + 1] = ("| %s | %d | %.4f | %.4f |"):format(r.config, r.step[#r.step] or 0, r.loss[1] or 0, r.loss[#r.loss] or 0)
      end
    end
  end
  out[#out + 1] = ""
  out[#out + 1] = "Charts: report.html in the same folder."
  return table.concat(out, "\n") .. "\n"
end

-- ---------------------------------------------------------------------------------------------
-- Rendering in a headless browser (the suite's check, and screenshots for the docs)

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- The Chromium (or Chrome) command: $CHAI_CHROMIUM, else the first of chromium, chromium-browser,
--- google-chrome on PATH; nil when there is none.
function M.chromium()
  local env = os.getenv("CHAI_CHROMIUM")
  if env and env ~= "" then return env end
  for _, name in ipairs({"chromium", "chromium-browser", "google-chrome"}) do
    local p = io.popen("command -v " .. name .. " 2>/dev/null")
    local path = p and p:read("l")
    if p then p:close() end
    if path and path ~= "" then return path end
  end
  return nil
end

-- Headless, offline and quiet: no sandbox (containers), no GPU, no network services, a fresh
-- profile that is removed afterwards.
local FLAGS = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
  .. "--disable-background-networking --disable-component-update --disable-sync --hide-scrollbars "
  .. "--virtual-time-budget=10000"

--- Opens a report in headless Chromium and returns what the page's self-check recorded
--- ({canvases =, drawn =, blank =, errors =, chartjs =}); with opts.screenshot also writes a PNG of
--- the page (opts.width × opts.height [1400 × 2400]). Returns nil and the reason when there is no
--- Chromium or the page recorded nothing.
function M.render(html_path, opts)
  opts = opts or {}
  local bin = M.chromium()
  if not bin then return nil, "no Chromium (install Debian's chromium, or set CHAI_CHROMIUM)" end
  local profile = os.tmpname()
  os.remove(profile)
  local url = "file://" .. (html_path:sub(1, 1) == "/" and html_path or ((os.getenv("PWD") or ".") .. "/" .. html_path))
  local base = ("%s %s --user-data-dir=%s"):format(sh_quote(bin), FLAGS, sh_quote(profile))
  local p = io.popen(("%s --dump-dom %s 2>/dev/null"):format(base, sh_quote(url)))
  local dom = p and p:read("a") or ""
  if p then p:close() end
  if opts.screenshot then
    os.execute(("%s --window-size=%d,%d --screenshot=%s %s >/dev/null 2>&1"):format(base, opts.width or 1400,
                opts.height or 2400, sh_quote(opts.screenshot), sh_quote(url)))
  end
  os.execute("rm -rf " .. sh_quote(profile))
  local text = dom:match('<pre id="chart%-check">(.-)</pre>')
  if not text or text == "" then return nil, "the page recorded no chart check (did its script run?)" end
  text = text:gsub("&quot;", '"'):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&#39;", "'"):gsub("&amp;", "&")
  local ok, check = pcall(json.decode, text)
  if not ok then return nil, "the chart check is not JSON: " .. text end
  return check
end

--- Writes report.html (and report.md with opts.markdown) into the folder of `store` (atomically).
--- opts.configs: the run's configurations (their order). Returns the paths written.
function M.write(store, opts)
  opts = opts or {}
  local data = M.collect(store, opts)
  local chartjs = M.chartjs()
  store:write_file(store.report_path, M.html(data, chartjs))
  local paths = {store.report_path}
  if opts.markdown then
    store:write_file(store.markdown_path, M.markdown(data))
    paths[#paths + 1] = store.markdown_path
  end
  return paths
end

return M
