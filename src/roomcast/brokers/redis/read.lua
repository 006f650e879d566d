-- Read a room's position and the stored events from an offset on, as one
-- consistent snapshot.
--
-- KEYS[1] meta hash, KEYS[2] log stream
-- ARGV 1 the first offset wanted   2 events at most
--      3 history size (-1: the one stored with the room)
--      4 history ttl in ms (-1: the one stored with the room)
-- Returns: epoch ("" for an unknown room), top offset, oldest offset held
-- (top + 1 when none), then offset, body for each event from
-- max(ARGV[1], oldest) on.
--
-- The stream is trimmed approximately (MAXLEN ~) and whole, by key expiry,
-- so "held" is decided here: the last `size` offsets, stored within `ttl`.

local meta, log = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'epoch', 'top', 'size', 'ttl')
if not state[1] then
  return {'', 0, 1}
end
local epoch, top = state[1], tonumber(state[2])
local size, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if size < 0 then
  size = tonumber(state[3] or '0')
end
if ttl < 0 then
  ttl = tonumber(state[4] or '0')
end
local now = redis.call('TIME')
local cutoff = now[1] * 1000 + math.floor(now[2] / 1000) - ttl

-- The oldest offset held: the first entry within the size bound that was
-- stored after the cutoff (entries are in time order).
local oldest = top + 1
local cursor = string.format('%d-0', math.max(top - size + 1, 1))
local chunk = 64
while oldest > top do
  local entries = redis.call('XRANGE', log, cursor, '+', 'COUNT', chunk)
  for _, entry in ipairs(entries) do
    if tonumber(entry[2][4]) > cutoff then
      oldest = tonumber(string.match(entry[1], '^(%d+)'))
      break
    end
  end
  if #entries < chunk then
    break
  end
  cursor = '(' .. entries[#entries][1]
end

local result = {epoch, top, oldest}
local first = math.max(tonumber(ARGV[1]), oldest)
local limit = tonumber(ARGV[2])
if limit > 0 and first <= top then
  local entries = redis.call('XRANGE', log, string.format('%d-0', first), '+', 'COUNT', limit)
  for _, entry in ipairs(entries) do
    result[#result + 1] = tonumber(string.match(entry[1], '^(%d+)'))
    result[#result + 1] = entry[2][2]
  end
end
return result
