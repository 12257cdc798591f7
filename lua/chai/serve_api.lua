-- chai.serve_api: the routes of `chai serve` and the checks every request passes. The HTTP
-- server (C, engine/src/serve/server.c) has already limited the body size and the headers; here:
-- the bearer token, the Host and Origin guards, 404/405, the content type, and a field-by-field
-- validation of every JSON body whose 400 answers name the field. Requests only ever name things
-- from fixed lists (models, tasks, configurations, criteria, job ids), so none can make the server
-- read a path of its choosing or run code.
local core = require "chai.core"
local json = core.json

local M = {}

M.FIELDS = {
  find_best_configuration = {"model_name", "dataset_name", "criterion", "quick"},
  choose_configuration = {"model_name", "dataset_name", "configurations", "criterion", "quick"},
}

local MAX_CONFIGS = 64

-- A value from a request, made safe to put in a message: printable ASCII, at most 40 characters.
local function shown(v)
  local s = type(v) == "string" and v or tostring(v)
  s = s:gsub("[^\32-\126]", "?")
  if #s > 40 then s = s:sub(1, 37) .. "..." end
  return s
end
M.shown = shown

local function contains(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function names_of(list, key)
  local out = {}
  for i, x in ipairs(list) do out[i] = key and x[key] or x end
  return table.concat(out, ", ")
end

local function is_array(v)
  if type(v) ~= "table" then return false end
  if getmetatable(v) == json.array_mt then return true end
  return next(v) == nil
end

local function json_type(v)
  if v == json.null then return "null" end
  if type(v) == "table" then return is_array(v) and "array" or "object" end
  return type(v)
end

--- Validates a decoded body against an endpoint. Returns the clean request, or nil, field, message.
function M.validate(kind, body, catalog)
  if type(body) ~= "table" or is_array(body) then
    return nil, "body", "the body must be a JSON object, got " .. json_type(body)
  end
  local allowed = M.FIELDS[kind]
  local keys = {}
  for k in pairs(body) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if not contains(allowed, k) then
      return nil, shown(k), string.format("unknown field '%s' (the fields are: %s)", shown(k),
                                          table.concat(allowed, ", "))
    end
  end
  local listing = catalog:list()
  local req = {}
  local function str(name, required)
    local v = body[name]
    if v == nil then
      if required then return nil, string.format("'%s' is required", name) end
      return true
    end
    if type(v) ~= "string" then
      return nil, string.format("'%s' must be a string, got %s", name, json_type(v))
    end
    return v
  end
  -- model_name
  local v, err = str("model_name", true)
  if not v then return nil, "model_name", err end
  if not catalog:model(v) then
    return nil, "model_name", string.format("no model '%s' (GET /models lists them: %s)", shown(v),
                                            names_of(listing.models, "name"))
  end
  req.model_name = v
  -- dataset_name
  v, err = str("dataset_name", true)
  if not v then return nil, "dataset_name", err end
  if not catalog:task(v) then
    return nil, "dataset_name", string.format("no task '%s' (the tasks are: %s)", shown(v),
                                              names_of(listing.tasks, "name"))
  end
  req.dataset_name = v
  -- criterion: required by find_best_configuration, accuracy by default for choose_configuration
  v, err = str("criterion", kind == "find_best_configuration")
  if not v then return nil, "criterion", err end
  if v == true then v = "accuracy" end
  if not contains(listing.criteria, v) then
    return nil, "criterion", string.format("criterion '%s' is not one of: %s", shown(v),
                                           table.concat(listing.criteria, ", "))
  end
  req.criterion = v
  -- configurations (choose_configuration): 1..64 known names, no repeats; the CHAI-KTQ project's
  -- spelling "chai-quant" is accepted for "chai_quant"
  if kind == "choose_configuration" then
    local list = body.configurations
    if list == nil then return nil, "configurations", "'configurations' is required" end
    if not is_array(list) then
      return nil, "configurations", "'configurations' must be an array of names, got " .. json_type(list)
    end
    if #list == 0 or #list > MAX_CONFIGS then
      return nil, "configurations", string.format("'configurations' must hold 1 to %d names, got %d",
                                                  MAX_CONFIGS, #list)
    end
    local seen, out = {}, setmetatable({}, json.array_mt)
    for i, name in ipairs(list) do
      local field = string.format("configurations[%d]", i - 1)
      if type(name) ~= "string" then
        return nil, field, string.format("'%s' must be a string, got %s", field, json_type(name))
      end
      local canonical = catalog:configuration(name)
      if not canonical then
        return nil, field, string.format("no configuration '%s' (the search's are: %s%s)", shown(name),
                                         table.concat(listing.configurations, ", "),
                                         catalog.space and "; or chai_ and steps of quant, target, "
                                           .. "kd in any order" or "")
      end
      if seen[canonical] then
        return nil, field, string.format("configuration '%s' is given twice", canonical)
      end
      seen[canonical] = true
      out[#out + 1] = canonical
    end
    req.configurations = out
  end
  -- quick
  if body.quick ~= nil then
    if type(body.quick) ~= "boolean" then
      return nil, "quick", "'quick' must be true or false, got " .. json_type(body.quick)
    end
    req.quick = body.quick
  else
    req.quick = false
  end
  return req
end

-- ---------------------------------------------------------------------------------------------
-- Responses

local API_HEADERS = {["Content-Type"] = "application/json; charset=utf-8",
                     ["Cache-Control"] = "no-store", ["X-Content-Type-Options"] = "nosniff",
                     ["Referrer-Policy"] = "no-referrer"}

local function headers(extra)
  if not extra then return API_HEADERS end -- read, never changed, by the server
  local h = {}
  for k, v in pairs(API_HEADERS) do h[k] = v end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

local function reply(status, value, extra)
  return status, headers(extra), json.encode(value)
end

local function fail(status, message, field, extra)
  return reply(status, {error = message, field = field}, extra)
end
M.fail = fail

-- The page: same-origin scripts and styles only, no framing.
local PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 .. "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
-- A report is the search's self-contained HTML (inline scripts and Chart.js): sandboxed into an
-- opaque origin, it can draw but cannot reach this server's API or the page's storage.
local REPORT_CSP = "sandbox allow-scripts allow-popups; default-src 'none'; "
                   .. "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"

-- ---------------------------------------------------------------------------------------------
-- The app

--- The request handler. o: {jobs=, catalog=, token=, host=, port=, health=function → JSON text}.
function M.new(o)
  local jobs, catalog = o.jobs, o.catalog
  local app = {}

  local function public_asset(name)
    local body, mime = core.serve.asset(name)
    if not body then return nil end
    local h = {["Content-Type"] = mime, ["X-Content-Type-Options"] = "nosniff",
               ["Cache-Control"] = "no-cache", ["Referrer-Policy"] = "no-referrer"}
    if name == "index.html" then
      h["Content-Security-Policy"] = PAGE_CSP
      h["X-Frame-Options"] = "DENY"
    end
    return 200, h, body
  end

  local function job_or_404(id)
    local job = id:match(jobs.id_pattern) and jobs:get(id)
    if not job then return nil, fail(404, string.format("no job '%s'", shown(id)), "id") end
    return job
  end

  local function body_json(req)
    local ctype = (req.headers["content-type"] or ""):lower()
    if not (ctype:match("^application/json%s*$") or ctype:match("^application/json%s*;")) then
      return nil, fail(415, "the body must be sent as Content-Type: application/json", "body")
    end
    local ok, value = pcall(json.decode, req.body, {strict = true})
    if not ok then
      local msg = tostring(value):gsub("^.-json: ", "")
      return nil, fail(400, "the body is not valid JSON: " .. shown(msg):gsub("%.%.%.$", ""), "body")
    end
    return value
  end

  local function start_job(kind)
    return function(req)
      local body, s, h, b = body_json(req)
      if body == nil then return s, h, b end
      local clean, field, msg = M.validate(kind, body, catalog)
      if not clean then return fail(400, msg, field) end
      local job, err = jobs:submit(kind, clean)
      if not job then return fail(500, "cannot create the job's folder: " .. tostring(err)) end
      local v = jobs:view(job)
      v.position = #jobs.queue
      return reply(202, v, {Location = v.urls.self})
    end
  end

  local routes = {
    {"^/$", GET = function() return public_asset("index.html") end, public = true},
    {"^/static/([%w%-%.]+)$", public = true, GET = function(_, name)
      local s, h, b = public_asset(name)
      if not s or name == "index.html" then return fail(404, "no such file", "path") end
      return s, h, b
    end},
    {"^/health$", public = true, GET = function() return 200, headers(), o.health() end},
    {"^/models$", GET = function()
      return 200, headers(), catalog:json()
    end},
    {"^/find_best_configuration$", POST = start_job("find_best_configuration")},
    {"^/choose_configuration$", POST = start_job("choose_configuration")},
    {"^/jobs$", GET = function()
      local list = setmetatable({}, json.array_mt)
      for _, job in ipairs(jobs:list()) do list[#list + 1] = jobs:view(job) end
      return reply(200, {jobs = list, counts = jobs:counts()})
    end},
    {"^/jobs/([^/]+)$",
     GET = function(_, id)
       local job, s, h, b = job_or_404(id)
       if not job then return s, h, b end
       return reply(200, jobs:view(job, true))
     end,
     DELETE = function(_, id)
       local job, s, h, b = job_or_404(id)
       if not job then return s, h, b end
       local status, res = jobs:cancel(job)
       if status >= 400 then return fail(status, res, "state") end
       return reply(status, jobs:view(res))
     end},
    {"^/jobs/([^/]+)/events$", GET = function(req, id, srv)
      local job, s, h, b = job_or_404(id)
      if not job then return s, h, b end
      local last = tonumber(req.headers["last-event-id"] or "")
      last = last and last >= 0 and math.floor(last) or 0
      local stream = srv:stream(200, {["Content-Type"] = "text/event-stream; charset=utf-8",
                                      ["Cache-Control"] = "no-store",
                                      ["X-Content-Type-Options"] = "nosniff",
                                      ["X-Accel-Buffering"] = "no"})
      jobs:subscribe(job, stream, last)
      return nil
    end},
    {"^/jobs/([^/]+)/report$", query_token = true, GET = function(_, id)
      local job, s, h, b = job_or_404(id)
      if not job then return s, h, b end
      local f = io.open(jobs:folder(job) .. "/report.html", "rb")
      if not f then
        return fail(404, string.format("job %s has no report yet (state: %s)", job.id, job.state),
                    "report")
      end
      local text = f:read("a")
      f:close()
      return 200, {["Content-Type"] = "text/html; charset=utf-8", ["Cache-Control"] = "no-store",
                   ["X-Content-Type-Options"] = "nosniff", ["Referrer-Policy"] = "no-referrer",
                   ["Content-Security-Policy"] = REPORT_CSP}, text
    end},
    {"^/jobs/([^/]+)/resume$", POST = function(_, id)
      local job, s, h, b = job_or_404(id)
      if not job then return s, h, b end
      local status, res = jobs:resume(job)
      if status >= 400 then return fail(status, res, "state") end
      local v = jobs:view(res)
      v.position = #jobs.queue
      return reply(status, v, {Location = v.urls.self})
    end},
  }

  -- Constant-time comparison (the loop does not stop at the first difference).
  local function same(a, b)
    if type(a) ~= "string" or #a ~= #b then return false end
    local diff = 0
    for i = 1, #a do diff = diff | (a:byte(i) ~ b:byte(i)) end
    return diff == 0
  end

  local allowed_hosts = {}
  for _, h in ipairs({"127.0.0.1", "localhost", "[::1]", o.host}) do
    local name = h:find(":", 1, true) and not h:find("^%[") and ("[" .. h .. "]") or h
    allowed_hosts[name .. ":" .. o.port] = true
    if o.port == 80 then allowed_hosts[name] = true end
  end

  local function authorized(req, route)
    if not o.token then return true end
    local auth = req.headers.authorization or ""
    local given = auth:match("^[Bb]earer +(%S+)%s*$")
    if not given and route and route.query_token then given = req.query_token end
    return same(given, o.token)
  end

  function app.handle(req, srv)
    local method = req.method
    local route, captures
    for _, r in ipairs(routes) do
      local c = {req.path:match(r[1])}
      if c[1] then route, captures = r, c break end
    end
    -- Without a token, only requests that name this server are served: a web page that
    -- resolves its own domain to 127.0.0.1 (DNS rebinding) is refused.
    if not o.token and req.headers.host and not allowed_hosts[req.headers.host:lower()] then
      return fail(403, string.format("the Host header must name this server (127.0.0.1:%d)",
                                     o.port), "host")
    end
    if not (route and route.public) and not authorized(req, route) then
      return fail(401, "a bearer token is required: Authorization: Bearer TOKEN", "authorization",
                  {["WWW-Authenticate"] = 'Bearer realm="chai"'})
    end
    if not route then return fail(404, "no such route: " .. shown(req.path), "path") end
    if method == "HEAD" then method = "GET" end
    local fn = route[method]
    if not fn then
      local allow = {}
      for _, m in ipairs({"GET", "POST", "DELETE"}) do if route[m] then allow[#allow + 1] = m end end
      if route.GET then allow[#allow + 1] = "HEAD" end
      return fail(405, string.format("%s is not allowed on %s (allowed: %s)", shown(method),
                                     shown(req.path), table.concat(allow, ", ")), "method",
                  {Allow = table.concat(allow, ", ")})
    end
    -- A cross-site page may send simple requests to 127.0.0.1 without asking: refuse any
    -- state-changing request whose Origin is another site.
    local origin = req.headers.origin
    if method ~= "GET" and origin and origin ~= "null" then
      local host = req.headers.host or ""
      if origin:lower() ~= ("http://" .. host):lower() then
        return fail(403, "cross-origin requests are refused (Origin " .. shown(origin) .. ")",
                    "origin")
      end
    elseif method ~= "GET" and origin == "null" then
      return fail(403, "cross-origin requests are refused (Origin null)", "origin")
    end
    return fn(req, captures[1] ~= req.path and captures[1] or nil, srv)
  end

  return app
end

return M
