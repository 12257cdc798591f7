-- Choosing among measured configurations: the CHAI-KTQ project's find_best_configuration criteria
-- (accuracy, latency, throughput, memory) plus the Pareto front of accuracy, throughput and weight
-- bytes, and the tables the search prints and the report shows.
local M = {}

--- The pareto criterion's accuracy tolerance: a front member qualifies when its paired accuracy
--- difference against the unmodified model is at least this (−0.5 points, issue 13's target).
M.tolerance = -0.005
--- The batch size whose throughput the criteria and the front use.
M.batch = 16

--- The figures a choice looks at, from a result line (nil when it has no metrics):
--- {accuracy, low, high, diff, diff_low, diff_high, latency (p50 ms), p90, p99, throughput
--- (sentences/s at M.batch), throughput64, weight_bytes, kv (bytes per token), rss, minutes}.
function M.values(r)
  local x = r and r.status == "ok" and r.metrics
  if type(x) ~= "table" or type(x.accuracy) ~= "table" then return nil end
  local v = {accuracy = x.accuracy.value, low = x.accuracy.low, high = x.accuracy.high,
             minutes = r.minutes, rss = x.peak_rss_bytes, kv = x.kv_bytes_per_token}
  if type(x.paired) == "table" then
    v.diff, v.diff_low, v.diff_high = x.paired.difference, x.paired.low, x.paired.high
  end
  if type(x.latency_ms) == "table" then
    v.latency, v.p90, v.p99 = x.latency_ms.p50, x.latency_ms.p90, x.latency_ms.p99
  end
  for _, t in ipairs(type(x.throughput) == "table" and x.throughput or {}) do
    if t.batch_size == M.batch then v.throughput = t.sentences_per_s end
    if t.batch_size == 64 then v.throughput64 = t.sentences_per_s end
  end
  if type(x.weight_bytes) == "table" then v.weight_bytes = x.weight_bytes.total end
  return v
end

local function before(a, b, keys)
  for _, k in ipairs(keys) do
    local x, y = a.v[k[1]], b.v[k[1]]
    if x ~= nil and y ~= nil and x ~= y then
      if k[2] == "max" then return x > y end
      return x < y
    end
    if x ~= nil and y == nil then return true end
    if x == nil and y ~= nil then return false end
  end
  return a.r.name < b.r.name
end

local function dominates(a, b)
  local ge = a.accuracy >= b.accuracy and a.throughput >= b.throughput and a.weight_bytes <= b.weight_bytes
  local gt = a.accuracy > b.accuracy or a.throughput > b.throughput or a.weight_bytes < b.weight_bytes
  return ge and gt
end

--- The Pareto front of accuracy (higher), throughput at M.batch (higher) and weight bytes (lower):
--- the results no other result beats on one of them without losing on another, in input order.
function M.front(results)
  local c = {}
  for _, r in ipairs(results) do
    local v = M.values(r)
    if v and v.accuracy and v.throughput and v.weight_bytes then c[#c + 1] = {r = r, v = v} end
  end
  local out = {}
  for i, a in ipairs(c) do
    local dominated = false
    for j, b in ipairs(c) do
      if i ~= j and dominates(b.v, a.v) then dominated = true break end
    end
    if not dominated then out[#out + 1] = a.r end
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- Criteria

--- The criteria by name (M.criteria lists them in the order the tables show them). Each is
--- {order = {{field, "max"|"min"}, ...}, why = "a phrase", pool = function(results) → the results
--- it chooses among, and optionally another order}; fields are those of M.values, ties fall
--- through to the next field and then to the name. Without pool, the results that have the first
--- field are the pool.
M.criteria, M.by_name = {}, {}

--- Adds (or replaces) a criterion; --criterion NAME then accepts it. See docs/search.md.
function M.add_criterion(name, spec)
  if type(name) ~= "string" or not name:match("^[%w_-]+$") then
    error("chai.search.pick.add_criterion: a name of letters, digits, _ and -, got " .. tostring(name), 2)
  end
  if type(spec) ~= "table" or type(spec.order) ~= "table" or #spec.order == 0 then
    error("chai.search.pick.add_criterion: spec.order must be a non-empty list of {field, \"max\"|\"min\"}", 2)
  end
  for i, k in ipairs(spec.order) do
    if type(k) ~= "table" or type(k[1]) ~= "string" or (k[2] ~= "max" and k[2] ~= "min") then
      error(("chai.search.pick.add_criterion: spec.order[%d] must be {field, \"max\"|\"min\"}"):format(i), 2)
    end
  end
  if not M.by_name[name] then M.criteria[#M.criteria + 1] = name end
  M.by_name[name] = {order = spec.order, why = spec.why or name, pool = spec.pool}
  return M.by_name[name]
end

M.add_criterion("accuracy", {order = {{"accuracy", "max"}, {"throughput", "max"}, {"weight_bytes", "min"}},
                             why = "the highest accuracy"})
M.add_criterion("latency", {order = {{"latency", "min"}, {"accuracy", "max"}, {"weight_bytes", "min"}},
                            why = "the lowest latency p50 at batch 1"})
M.add_criterion("throughput", {order = {{"throughput", "max"}, {"accuracy", "max"}, {"weight_bytes", "min"}},
                               why = ("the most sentences/s at batch %d"):format(M.batch)})
M.add_criterion("memory", {order = {{"weight_bytes", "min"}, {"kv", "min"}, {"accuracy", "max"}},
                           why = "the fewest weight bytes"})
M.add_criterion("pareto", {
  order = {{"throughput", "max"}, {"weight_bytes", "min"}, {"accuracy", "max"}},
  why = ("on the Pareto front, the fastest within %.1f points of the unmodified model"):format(-100 * M.tolerance),
  -- The front members within the tolerance; when none is, the whole front by accuracy.
  pool = function(results)
    local front, pool = M.front(results), {}
    for _, r in ipairs(front) do
      local v = M.values(r)
      if v.diff == nil or v.diff >= M.tolerance - 1e-12 then pool[#pool + 1] = r end
    end
    if #pool == 0 then return front, M.by_name.accuracy.order end
    return pool
  end})

--- The best result under a criterion (nil when none has the figures) and a phrase saying why:
---   accuracy    the highest accuracy (ties: faster, then smaller)
---   latency     the lowest p50 latency at batch 1
---   throughput  the most sentences/s at batch 16
---   memory      the fewest weight bytes (ties: KV bytes per token)
---   pareto      on the Pareto front, the fastest whose paired accuracy difference against the
---               unmodified model is ≥ −0.5 points; when none is, the most accurate on the front
function M.best(results, criterion)
  local crit = M.by_name[criterion]
  if not crit then error("unknown criterion " .. tostring(criterion), 2) end
  local keys = crit.order
  local rs
  if crit.pool then
    local alt
    rs, alt = crit.pool(results)
    keys = alt or keys
  else
    rs = {}
    for _, r in ipairs(results) do
      local v = M.values(r)
      if v and v[keys[1][1]] ~= nil then rs[#rs + 1] = r end
    end
  end
  local pool = {}
  for _, r in ipairs(rs) do
    local v = M.values(r)
    if v then pool[#pool + 1] = {r = r, v = v} end
  end
  if #pool == 0 then return nil, "no configuration has the figures" end
  table.sort(pool, function(a, b) return before(a, b, keys) end)
  return pool[1].r, crit.why
end

-- ---------------------------------------------------------------------------------------------
-- Tables (markdown: the terminal, search.log and report.md show the same text)

local function pct(x) return x and ("%.2f%%"):format(100 * x) or "–" end
local function pts(x) return x and ("%+.2f"):format(100 * x) or "–" end
local function num(x, f) return x and (f or "%.1f"):format(x) or "–" end
local function mb(x) return x and ("%.2f"):format(x / 1e6) or "–" end

--- The steps of a result as "chai → kd → quant" ("—" for the baseline).
function M.steps_text(r)
  local order = r.order or {}
  if r.name == "baseline" or (r.recipe and r.recipe.steps and #r.recipe.steps == 0) then return "—" end
  local s = {"chai"}
  for _, x in ipairs(order) do s[#s + 1] = x end
  return table.concat(s, " → ")
end

local function ratio(a, b, f)
  if not a or not b or b == 0 then return "–" end
  return (f or "%.2f×"):format(a / b)
end

-- The baseline's throughput that a result's ratio is against: the one measured on the same rank
-- of a distributed search (rank_baseline, docs/distributed.md), else the baseline row's.
local function rank_base(r, bv)
  local rb = type(r.rank_baseline) == "table" and M.values({status = "ok", metrics = r.rank_baseline})
  if rb and rb.throughput then return rb.throughput end
  return bv and bv.throughput
end

--- The results table: one row per configuration (failed ones say why), ratios against `base`
--- (the baseline's result) when given — a result of a distributed search against the baseline
--- measured on its own rank — ★ on the Pareto front.
function M.table(results, base)
  local bv = base and M.values(base) or nil
  local on_front = {}
  for _, r in ipairs(M.front(results)) do on_front[r.name] = true end
  local lines = {
    "| configuration | steps | accuracy (95% CI) | Δ vs baseline [paired 95% CI] | latency p50 / p90 / p99 ms | sentences/s @16 / @64 | ×baseline @16 | weight MB | ×baseline bytes | KV B/token | peak RSS MB | build min |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  }
  for _, r in ipairs(results) do
    local v = M.values(r)
    local name = (on_front[r.name] and "★ " or "") .. r.name
    if not v then
      local why = tostring(r.error or r.status or "no metrics"):gsub("|", "/"):gsub("\n", " ")
      lines[#lines + 1] = ("| %s | %s | %s: %s |  |  |  |  |  |  |  |  |  |"):format(name, M.steps_text(r),
                                                                             r.status or "failed", why)
    else
      lines[#lines + 1] = ("| %s | %s | %s (%s–%s) | %s [%s, %s] | %s / %s / %s | %s / %s | %s | %s | %s | %s | %s | %s |"):format(
        name, M.steps_text(r), pct(v.accuracy), num(v.low and 100 * v.low), num(v.high and 100 * v.high),
        pts(v.diff), pts(v.diff_low), pts(v.diff_high), num(v.latency, "%.2f"), num(v.p90, "%.2f"),
        num(v.p99, "%.2f"), num(v.throughput, "%.0f"), num(v.throughput64, "%.0f"),
        ratio(v.throughput, rank_base(r, bv)), mb(v.weight_bytes),
        ratio(v.weight_bytes, bv and bv.weight_bytes, "%.3f"), num(v.kv, "%.0f"), mb(v.rss),
        num(v.minutes, "%.2f"))
    end
  end
  return table.concat(lines, "\n")
end

--- The best configuration under every criterion (the chosen criterion marked) as a table.
function M.best_table(results, chosen)
  local lines = {"| criterion | configuration | why | accuracy | Δ vs baseline | sentences/s @16 | latency p50 ms | weight MB | KV B/token |",
                 "|---|---|---|---|---|---|---|---|---|"}
  for _, c in ipairs(M.criteria) do
    local r, why = M.best(results, c)
    local v = r and M.values(r)
    lines[#lines + 1] = ("| %s%s | %s | %s | %s | %s | %s | %s | %s | %s |"):format(
      c, c == chosen and " (chosen)" or "", r and r.name or "–", why or "", pct(v and v.accuracy),
      pts(v and v.diff), num(v and v.throughput, "%.0f"), num(v and v.latency, "%.2f"),
      mb(v and v.weight_bytes), num(v and v.kv, "%.0f"))
  end
  return table.concat(lines, "\n")
end

--- The Pareto front as a table, fastest first.
function M.front_table(results)
  local front = M.front(results)
  table.sort(front, function(a, b)
    local x, y = M.values(a), M.values(b)
    if x.throughput ~= y.throughput then return x.throughput > y.throughput end
    return a.name < b.name
  end)
  local lines = {"| on the front | accuracy | Δ vs baseline | sentences/s @16 | weight MB |", "|---|---|---|---|---|"}
  for _, r in ipairs(front) do
    local v = M.values(r)
    lines[#lines + 1] = ("| %s | %s | %s | %s | %s |"):format(r.name, pct(v.accuracy), pts(v.diff),
                                                             num(v.throughput, "%.0f"), mb(v.weight_bytes))
  end
  return table.concat(lines, "\n")
end

return M
