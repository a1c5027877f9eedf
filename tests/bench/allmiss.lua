-- wrk script: every request asks for an id never asked before (an all-miss load).
--   wrk ... -s allmiss.lua URL -- PREFIX [WIDTH]
-- requests PREFIX .. i (zero-padded to WIDTH digits) for i = 1, 2, 3, ... Give every run its
-- own PREFIX so each server and each round gets a fresh id space.
local prefix = ""
local fmt = "%d"
local i = 0

function init(args)
  prefix = args[1]
  fmt = "%0" .. (args[2] or "1") .. "d"
end

function request()
  i = i + 1
  return wrk.format("GET", prefix .. string.format(fmt, i))
end
