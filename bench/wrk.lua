-- Drives wrk from a request file: one request per line, "METHOD<TAB>PATH<TAB>HEADERS<TAB>BODY",
-- HEADERS as "Name: value|Name: value". Connections take the lines in turn, so many users'
-- tokens and tasks are spread over the run. Prints one JSON line with the figures.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function split(text, sep)
  local out, start = {}, 1
  while true do
    local at = string.find(text, sep, start, true)
    if not at then
      table.insert(out, string.sub(text, start))
      return out
    end
    table.insert(out, string.sub(text, start, at - 1))
    start = at + 1
  end
end

function init(args)
  statuses = {}
  requests = {}
  for line in io.lines(args[1]) do
    local f = split(line, "\t")
    local headers = {}
    if f[3] ~= nil and f[3] ~= "" then
      for _, h in ipairs(split(f[3], "|")) do
        local name, value = string.match(h, "^([^:]+):%s*(.*)$")
        if name then headers[name] = value end
      end
    end
    local body = f[4]
    if body == "" then body = nil end
    if body then headers["Content-Type"] = "application/json" end
    table.insert(requests, wrk.format(f[1], f[2], headers, body))
  end
  counter = math.random(#requests)
end

function request()
  counter = counter % #requests + 1
  return requests[counter]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '\nWRK-JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"socket_errors": %d, "timeouts": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect + e.read + e.write, e.timeout, table.concat(parts, ", ")))
end
