-- 16-deep HTTP/1.1 pipelining for wrk: each wrk "request" is DEPTH requests sent in one write, and wrk
-- counts every response, so Requests/sec is responses per second.
-- Usage: wrk -s bench/pipeline.lua http://127.0.0.1:PORT -- /1k.bin [DEPTH]

local req

init = function(args)
  local path = args[1] or "/1k.bin"
  local depth = tonumber(args[2] or "16")
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, path)
  end
  req = table.concat(r)
end

request = function()
  return req
end
