-- A fake search backend for the tests: tiny models, made-up but deterministic metrics and step
-- records (with CHAI elbow curves and training curves, as chai.ktq's have), and hooks to make a
-- configuration fail, stop on a signal, or fill the disk. See lua/chai/search.lua for the backend
-- interface.
local chai = require "chai"
local core = require "chai.core"

local M = {}

local CFG = {vocab_size = 64, hidden_size = 16, num_hidden_layers = 2, num_attention_heads = 4,
             ffn_dim = 32, max_position_embeddings = 32, num_labels = 2}

local function has(list, x)
  for _, y in ipairs(list) do if y == x then return true end end
  return false
end

-- A buffer with the file methods the search writes to.
function M.buffer()
  local b = {parts = {}}
  function b:write(...) for _, s in ipairs({...}) do self.parts[#self.parts + 1] = tostring(s) end return self end
  function b:flush() end
  function b:text() return table.concat(self.parts) end
  return b
end

--- spec: fail_on (a configuration that raises), signal_on (one that sends SIGTERM to this process
--- and then waits in a C loop until interrupted), full_disk_on (after this one's run, writes fail
--- after spec.full_disk_bytes bytes), fill_disk_on (after this one's run, a file in spec.fill_dir
--- fills the file system but one page), unavailable (a step this "build" lacks), step_seconds (step
--- name → seconds its records claim), setup_error, signal_in_setup (SIGINT while setting up).
function M.backend(spec)
  spec = spec or {}
  local b = {calls = {}, quick = {data = {calibration = 8, sensitivity = 8, heldout = 8},
                                   steps = {target = {steps = 2}, kd = {steps = 2}}}}
  function b.defaults()
    return {chai = {mode = "static"}, quant = {high = 0.3, low = 0.3},
            target = {fraction = 0.3, steps = 400}, kd = {alpha = 0.5, T = 2, steps = 400}}
  end
  function b.setup(o, hooks)
    hooks.stage("load model")
    if spec.setup_error then error(spec.setup_error, 0) end
    if spec.signal_in_setup then
      -- (io.popen: os.execute's system() ignores SIGINT in this process while the child runs)
      io.popen("kill -INT " .. b.pid()):close()
      if core.testing.spin_until_interrupted(30) then error("OPT training interrupted", 0) end
    end
    b.options = o
    return {reference = chai.opt.create(CFG, {seed = 1}), task = {name = o.task}, model = "fake/model",
            info = {layers = 2, heads = 4}}
  end
  function b.unavailable(c)
    if spec.unavailable and has(c.recipe.steps, spec.unavailable) then
      return ("step %s is not available in this build"):format(spec.unavailable)
    end
    return nil
  end
  function b.check(c)
    local kd = c.recipe.kd
    if kd and kd.alpha ~= nil and (type(kd.alpha) ~= "number" or kd.alpha < 0 or kd.alpha > 1) then
      error("chai.ktq: kd.alpha must be in [0, 1], got " .. tostring(kd.alpha), 0)
    end
  end
  function b.sensitivity()
    return {layers = 2, methods = {{method = "fisher", scores = {0.25, 0.75}},
                                   {method = "entropy", scores = {1.5, 1.25}},
                                   {method = "perturb", error = "not in this build"}}}
  end
  function b.pid()
    local f = io.open("/proc/self/stat", "rb")
    local text = f:read("a")
    f:close()
    return text:match("^(%d+)")
  end
  function b.run(c, ctx, hooks)
    b.calls[#b.calls + 1] = c.name
    if spec.fail_on == c.name then error("boom in " .. c.name, 0) end
    if spec.signal_on == c.name then
      os.execute("kill -TERM " .. b.pid())
      if core.testing.spin_until_interrupted(30) then error("OPT forward interrupted", 0) end
    end
    local steps = c.recipe.steps
    local records = {}
    for i, s in ipairs(steps) do
      hooks.stage(s)
      local rec = {step = s, index = i, seconds = (spec.step_seconds or {})[s] or 0.01}
      if s == "chai" then
        rec.k = {4, 2}
        rec.curves = {{layer = 1, inertia = {4, 2.5, 1.2, 0}, elbow = 4, k = 4, rule = "chord"},
                      {layer = 2, inertia = {3, 1, 0.6, 0}, elbow = 2, k = 2, rule = "kneedle"}}
      elseif s == "target" or s == "kd" then
        rec.training = {curve = {step = {1, 2, 3, 4}, loss = {0.7, 0.6, 0.55, 0.5}}, heldout_evals = {}}
      end
      records[i] = rec
    end
    local model = chai.opt.create(CFG, {seed = 1})
    if has(steps, "chai") then model:set_heads({layers = {{layer = 2, clusters = {{1, 2}, {3, 4}}}}}) end
    local metrics = nil
    if hooks.measure ~= false then
      hooks.stage("measure")
      -- Each step trades a little accuracy for speed and bytes; kd wins some accuracy back.
      local q, t, k = has(steps, "quant"), has(steps, "target"), has(steps, "kd")
      local acc = 0.80 - (has(steps, "chai") and 0.002 or 0) - (q and 0.004 or 0) + (t and 0.001 or 0) + (k and 0.002 or 0)
      if c.order and c.order[1] == "quant" then acc = acc + 0.0005 end
      for _, kn in ipairs(c.knobs or {}) do if type(kn.value) == "number" then acc = acc + 0.0001 * kn.value end end
      local thr = 100 * (has(steps, "chai") and 1.1 or 1) * (q and 2.2 or 1)
      local bytes = 4e6 * (q and 0.28 or 1)
      metrics = {accuracy = {value = acc, low = acc - 0.03, high = acc + 0.03, n = 872},
                 paired = {difference = acc - 0.80, low = acc - 0.81, high = acc - 0.79},
                 latency_ms = {p50 = 10 / thr * 100, p90 = 12 / thr * 100, p99 = 15 / thr * 100},
                 throughput = {{batch_size = 16, sentences_per_s = thr}, {batch_size = 64, sentences_per_s = 1.3 * thr}},
                 weight_bytes = {total = bytes, by_format = {f32 = bytes}},
                 kv_bytes_per_token = has(steps, "chai") and 96 or 128, peak_rss_bytes = 5e7, seconds = 0.01}
    end
    if spec.full_disk_on == c.name then core.testing.fail_writes_after(spec.full_disk_bytes or 50) end
    if spec.fill_disk_on == c.name then
      -- A really full disk: a filler takes every page but one, and this result's line is longer
      -- than a page, so its write stops halfway with ENOSPC.
      records[#records].pad = string.rep("x", 3 * 4096)
      local spare = assert(io.open(spec.fill_dir .. "/spare", "wb"))
      spare:write(string.rep("s", 4096))
      spare:close()
      local filler = assert(io.open(spec.fill_dir .. "/filler", "wb"))
      filler:setvbuf("no")
      local chunk = string.rep("f", 4096)
      while filler:write(chunk) do end
      filler:close()
      os.remove(spec.fill_dir .. "/spare")
    end
    return {model = model, records = records, metrics = metrics, minutes = 0.001}
  end
  function b.save(m, dir) m:save(dir) end
  return b
end

return M
