-- wrk script: cycle over N cached keys.
--   wrk ... -s multikey.lua URL -- PREFIX N [WIDTH]
-- requests PREFIX .. zero-padded i for i = 1..N, round robin. The requests are built once in
-- init() so the per-request Lua cost is a table lookup.
local requests = {}
local n = 0
local i = 0

function init(args)
  local prefix = args[1]
  n = tonumber(args[2])
  local width = tonumber(args[3] or "8")
  for k = 1, n do
    requests[k] = wrk.format("GET", prefix .. string.format("%0" .. width .. "d", k))
  end
end

function request()
  i = i % n + 1
  return requests[i]
end
