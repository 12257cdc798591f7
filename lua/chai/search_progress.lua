-- What a search says while it runs: a line per stage, and on a terminal an overall bar with the
-- configuration count and the ETA redrawn under them (plain lines otherwise). Every line also goes
-- to the log function (search.log).
local M = {}

local P = {}
P.__index = P

--- "1:02:03" / "4:05" for seconds (nil → "?").
function M.clock(s)
  if s == nil then return "?" end
  s = math.max(0, math.floor(s + 0.5))
  if s >= 3600 then return ("%d:%02d:%02d"):format(s // 3600, s % 3600 // 60, s % 60) end
  return ("%d:%02d"):format(s // 60, s % 60)
end

--- A progress display. opts: total (configurations), tty (draw the bar), out (a file; stderr),
--- log (function(line)), prefix ["search"].
function M.new(opts)
  return setmetatable({total = opts.total or 0, done = 0, tty = opts.tty, out = opts.out or io.stderr,
                       log = opts.log or function() end, prefix = opts.prefix or "search",
                       eta = nil, current = nil, stage = nil, bar_shown = false}, P)
end

function P:bar_text()
  local width = 24
  local fill = self.total > 0 and math.floor(width * self.done / self.total) or 0
  local what = self.current and (self.current .. (self.stage and (": " .. self.stage) or "")) or ""
  return ("[%s%s] %d/%d configurations  ETA %s  %s"):format(string.rep("=", fill), string.rep(" ", width - fill),
                                                            self.done, self.total, M.clock(self.eta), what)
end

-- Clears the bar's line (terminal only) so a message can take it.
function P:clear()
  if self.tty and self.bar_shown then
    self.out:write("\r\27[K")
    self.bar_shown = false
  end
end

function P:draw()
  if not self.tty then return end
  self.out:write("\r\27[K", self:bar_text())
  self.out:flush()
  self.bar_shown = true
end

--- A line for the person watching (and the log).
function P:message(text)
  self:clear()
  self.out:write(self.prefix, ": ", text, "\n")
  self.out:flush()
  self.log(text)
  self:draw()
end

--- The counts and the ETA (seconds or nil) changed.
function P:update(done, eta)
  self.done, self.eta = done, eta
  self:draw()
end

--- A configuration's stage begins: "chai_kd: kd (3/13, ETA 4:10)" as a line, and the bar.
function P:stage_begin(config, stage)
  self.current, self.stage = config, stage
  local where = config and (config .. ": ") or ""
  if self.total == 0 then return self:message(where .. stage) end -- before the space is known
  self:message(("%s%s  (%d/%d done, ETA %s)"):format(where, stage, self.done, self.total, M.clock(self.eta)))
end

--- The end of the run: the bar's line is cleared.
function P:finish()
  self.current, self.stage = nil, nil
  self:clear()
end

return M
