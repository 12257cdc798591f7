-- chai.heads: plan files (0-based) ↔ Lua (1-based), every malformed plan refused with its reason,
-- the numeric helpers, and plans from synthetic calibration statistics.
local chai = require "chai"
local heads = chai.heads
local passed, failed = 0, 0
local function check(cond, what)
  if cond then passed = passed + 1 else failed = failed + 1; io.stderr:write("FAILED: " .. what .. "\n") end
end
local function check_error(fn, needle, what)
  local ok, err = pcall(fn)
  check(not ok and tostring(err):find(needle, 1, true) ~= nil, what .. " (got: " .. tostring(err) .. ")")
end
local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
local function read(path) local f = assert(io.open(path, "rb")); local s = f:read("a"); f:close(); return s end
local function write(path, s) local f = assert(io.open(path, "wb")); f:write(s); f:close() end

-- 1. Round trip: the file is 0-based, Lua 1-based.
local tmp = os.tmpname()
write(tmp, '{"layers":[{"layer":3,"clusters":[[1],[0,2]]},{"layer":0,"clusters":[[0,3,5],[1],[2,4]]},' ..
           '{"layer":1,"k":2}],"meta":{"model":"tiny","note":[1,2]}}')
local plan = heads.load_plan(tmp)
check(#plan.layers == 3, "three layers")
check(plan.layers[1].layer == 1 and same(plan.layers[1].clusters, {{1, 4, 6}, {2}, {3, 5}}) and plan.layers[1].k == 3,
      "layer 0 → 1, heads +1")
check(plan.layers[2].layer == 2 and plan.layers[2].k == 2 and plan.layers[2].clusters == nil, "k-only layer")
check(plan.layers[3].layer == 4 and same(plan.layers[3].clusters, {{2}, {1, 3}}), "sorted by layer")
check(plan.meta.model == "tiny" and plan.meta.note[2] == 2, "meta kept")
local tmp2 = os.tmpname()
heads.save_plan(plan, tmp2)
local text = read(tmp2)
check(text:find('{"layer":0,"clusters":[[0,3,5],[1],[2,4]],"k":3}', 1, true) ~= nil, "saved 0-based: " .. text)
check(text:find('{"layer":1,"k":2}', 1, true) ~= nil, "k-only layer saved")
check(same(heads.load_plan(tmp2), plan), "load(save(plan)) == plan")
-- A plan written in Lua by hand, saved and read back.
local mine = {layers = {{layer = 2, clusters = {{1, 2}, {3}, {4}}}}}
heads.save_plan(mine, tmp2)
check(read(tmp2):find('{"layer":1,"clusters":[[0,1],[2],[3]],"k":3}', 1, true) ~= nil, "hand plan saved 0-based")
local back = heads.load_plan(tmp2, {layers = 4, heads = 4})
check(back.layers[1].layer == 2 and back.layers[1].k == 3 and same(back.layers[1].clusters, mine.layers[1].clusters), "hand plan back")
check(heads.validate(mine, {layers = 2, heads = 4}).layers[1].k == 3, "validate fills k")

-- 2. Malformed files are refused with the reason (0-based numbers, as in the file).
local bad_files = {
  {'{"layers":[', "malformed JSON"},
  {'{"layers":[{"layer":0,"clusters":[[0,1],[2]]}]}', "layer 0: head 3 missing", {heads = 4}},
  {'{"layers":[{"layer":0,"clusters":[[0,1],[1,2],[3]]}]}', "layer 0: head 1 listed twice"},
  {'{"layers":[{"layer":0,"clusters":[[0,1],[2,9]]}]}', "head 9 out of range (heads 0..3)", {heads = 4}},
  {'{"layers":[{"layer":12,"clusters":[[0]]}]}', "layer 12 out of range (the model has layers 0..11)", {layers = 12}},
  {'{"layers":[{"layer":1,"clusters":[[0]]},{"layer":1,"clusters":[[0]]}]}', "layer 1 listed twice"},
  {'{"layers":[{"layer":0,"clusters":[[0],[],[1]]}]}', "layer 0: cluster 1 is empty"},
  {'{"layers":[{"layer":0,"clusters":[[0,1]],"k":2}]}', "k = 2 but 1 clusters listed"},
  {'{"layers":[{"layer":0,"clusters":[[0,1]]}],"oops":1}', 'unknown key "oops"'},
}
for i, case in ipairs(bad_files) do
  write(tmp, case[1])
  check_error(function() heads.load_plan(tmp, case[3]) end, case[2], "bad file " .. i)
end
check_error(function() heads.load_plan("/nonexistent/plan.json") end, "/nonexistent/plan.json", "missing file")

-- 3. Malformed Lua plans are refused with 1-based numbers.
local dims = {layers = 4, heads = 4}
local bad_plans = {
  {{layers = {{layer = 1, clusters = {{1, 2}, {3}}}}}, "layer 1: head 4 missing", true},
  {{layers = {{layer = 1, clusters = {{1, 2}, {2, 3}, {4}}}}}, "layer 1: head 2 listed twice"},
  {{layers = {{layer = 1, clusters = {{1, 2}, {3, 5}, {4}}}}}, "layer 1: head 5 out of range (heads 1..4)", true},
  {{layers = {{layer = 1, clusters = {{0, 1}, {2, 3}}}}}, "layer 1: head 0 out of range"},
  {{layers = {{layer = 5, clusters = {{1, 2, 3, 4}}}}}, "layer 5 out of range (the model has layers 1..4)", true},
  {{layers = {{layer = 0, clusters = {{1, 2, 3, 4}}}}}, "layer 0 out of range"},
  {{layers = {{layer = 2, clusters = {{1, 2, 3, 4}}}, {layer = 2, clusters = {{1, 2, 3, 4}}}}}, "layer 2 listed twice"},
  {{layers = {{layer = 1, clusters = {{1, 2, 3, 4}, {}}}}}, "layer 1: cluster 2 is empty"},
  {{layers = {{layer = 1, clusters = {}}}}, "layer 1 has no clusters"},
  {{layers = {{layer = 1, k = 5}}}, "layer 1: k = 5 outside 1..4", true},
  {{layers = {{layer = 1}}}, "needs clusters or k"},
  {{layers = {{clusters = {{1}}}}}, "has no layer"},
  {{layers = {{layer = 1.5, clusters = {{1}}}}}, "layer must be an integer"},
  {{layers = {{layer = 1, clusters = {{1, "x"}}}}}, "a head must be an integer"},
  {{layers = {{layer = 1, clusters = {{1, 2, 3, 4}}, heads = 3}}}, "unknown key heads"},
  {{layers = 3}, "plan.layers must be a table"},
}
for i, case in ipairs(bad_plans) do
  check_error(function() heads.validate(case[1], dims) end, case[2], "bad plan " .. i)
  -- Without the model's shape, save can only refuse what is wrong in itself.
  if not case[3] then check_error(function() heads.save_plan(case[1], tmp2) end, case[2], "save refuses bad plan " .. i) end
end
os.remove(tmp)
os.remove(tmp2)

-- 4. Numeric helpers.
local labels, inertia, centers = heads.kmeans({{0}, {0.1}, {5}, {5.2}}, 2, {seed = 1})
check(labels[1] == labels[2] and labels[3] == labels[4] and labels[1] ~= labels[3], "kmeans groups")
check(math.abs(inertia - (0.005 + 0.02)) < 1e-6 and #centers == 2, "kmeans inertia " .. inertia)
local l2 = heads.kmeans(chai.tensor({{0}, {0.1}, {5}, {5.2}}), 2, {seed = 1})
check(same(labels, l2), "kmeans takes a tensor")
check_error(function() heads.kmeans({{0}, {1}}, 3) end, "k must be in 1..2", "kmeans k too big")
check_error(function() heads.kmeans({{0}, {1}}, 1, {n_init = 0}) end, "n_init must be >= 1", "kmeans n_init")
check_error(function() heads.kmeans({{0}, {1}}, 1, {bogus = 1}) end, "bogus", "kmeans unknown option")
check_error(function() heads.kmeans({0, 1}, 1) end, "2-D", "kmeans needs a matrix")
local k, rule = heads.elbow({10, 3, 2, 1.5, 1.2})
check(k == 2 and rule == "kneedle", "elbow")
local k3, rule3 = heads.elbow({10, 3, 2, 1.5, 1.2}, {sensitivity = 3})
check(k3 == 2 and rule3 == "chord", "elbow fallback")
check_error(function() heads.elbow({1, "x"}) end, "inertias[2] is string", "elbow bad value")
local x, y = {}, {}
for i = 1, 10 do x[i] = (i - 1) / 9; y[i] = -1 / (x[i] + 0.1) + 5 end
check(heads.kneedle(x, y, {curve = "concave", direction = "increasing"}) == 3, "kneedle figure 2 (1-based)")
local d = heads.cosine_distance({{1, 0}, {2, 0}, {0, 1}})
check(math.abs(d[1][2]) < 1e-12 and math.abs(d[1][3] - 1) < 1e-12, "cosine distance")
check(same(heads.agglomerative({{0, 1, 3, 7}, {1, 0, 2, 6}, {3, 2, 0, 4}, {7, 6, 4, 0}}, 2), {1, 1, 1, 2}), "agglomerative")
check_error(function() heads.agglomerative({{0, 1}, {2, 0}}, 1) end, "not symmetric", "agglomerative asymmetric")
local e = heads.from_labels(3, {5, 2, 5, 2, 9})
check(e.layer == 3 and e.k == 3 and same(e.clusters, {{1, 3}, {2, 4}, {5}}), "from_labels")

-- 5. Plans from synthetic statistics: 8 heads in 3 obvious groups in layers 2..3, random heads in
-- layer 1 (whose elbow the override replaces).
local function group_rows(rng_seed, groups)
  local samples = {}
  local r = chai.randn({6, 8, 10}, {seed = rng_seed}):totable()
  for s = 1, 6 do
    local m = {}
    for h = 1, 8 do
      m[h] = {}
      for j = 1, 10 do
        local g = groups[h]
        m[h][j] = g and ((g * 7 + j * 3 + s) % 5) + 0.01 * r[s][h][j] or r[s][h][j]
      end
    end
    samples[s] = m
  end
  return samples
end
local grouped = {1, 1, 2, 3, 2, 1, 3, 3}
local stats = {n_layers = 3, n_heads = 8, tokens = 10, n_samples = 6, layers = {
  {rows = group_rows(1, {}), mean = {1, 1, 1, 1, 1, 1, 1, 1}},
  {rows = group_rows(2, grouped), mean = {0.1, 0.1, 0.5, 0.9, 0.5, 0.1, 0.9, 0.9}},
  {rows = chai.tensor(group_rows(3, grouped)), mean = {0.1, 0.11, 0.5, 0.9, 0.52, 0.12, 0.91, 0.93}},
}}
local p = heads.plan(stats, {override = {[1] = 8}})
check(#p.layers == 2 and p.layers[1].layer == 2 and p.layers[2].layer == 3, "layer 1 overridden to dense")
check(same(p.layers[1].clusters, {{1, 2, 6}, {3, 5}, {4, 7, 8}}), "layer 2 groups found")
check(same(p.layers[2].clusters, p.layers[1].clusters), "tensor stats give the same plan")
check(p.meta.method == "kmeans-elbow" and p.meta.layers[2].elbow == 3 and #p.meta.layers[2].inertia == 8, "meta records the elbow")
check(heads.validate(p, {layers = 3, heads = 8}) ~= nil, "plan validates")
local p2 = heads.plan(stats, {min_layer = 3})
check(#p2.layers == 1 and p2.layers[1].layer == 3, "min_layer leaves early layers dense")
local p3 = heads.plan(stats, {skip_layers = {1, 3}})
check(#p3.layers == 1 and p3.layers[1].layer == 2, "skip_layers")
local p4 = heads.plan(stats, {override = {[1] = 8, [2] = 2}})
check(p4.layers[1].k == 2, "override k")
local pk = heads.plan(stats, {method = "chai-ktq", min_layer = 2})
check(#pk.layers == 2 and pk.layers[2].k == 7 and pk.meta.method == "chai-ktq", "chai-ktq: k = max(8 - 1, elbow)")
-- Layer 2's mean attention has only 3 distinct values: k-means at k = 7 can only fill 3 clusters.
check(same(pk.layers[1].clusters, {{1, 2, 6}, {3, 5}, {4, 7, 8}}), "chai-ktq on 3 distinct values")
local pk2 = heads.plan(stats, {method = "chai-ktq", min_layer = 2, override = {[2] = 3}})
check(same(pk2.layers[1].clusters, {{1, 2, 6}, {3, 5}, {4, 7, 8}}), "chai-ktq with override k")
check_error(function() heads.plan(stats, {method = "magic"}) end, 'unknown method "magic"', "bad method")
check_error(function() heads.plan(stats, {override = {[2] = 9}}) end, "k for layer 2 must be an integer in 1..8", "bad override")
check_error(function() heads.plan(stats, {colour = 1}) end, "unknown option colour", "unknown option")
check_error(function() heads.plan({}) end, "stats.layers", "bad stats")
local a = heads.plan(stats, {seed = 3})
local b = heads.plan(stats, {seed = 3})
check(same(a, b), "plan is deterministic for a seed")

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
