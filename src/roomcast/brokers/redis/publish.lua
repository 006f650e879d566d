-- Publish events of one room: offsets, history, idempotency and the message,
-- atomically (Redis runs one script at a time), so nodes publishing to one
-- room concurrently never produce duplicate or out-of-order offsets.
--
-- KEYS[1] meta hash, KEYS[2] log stream, KEYS[3..] idempotency keys
-- ARGV  1 PUBLISH or SPUBLISH       2 room channel     3 feed channel or ""
--       4 epoch for a new room      5 history size     6 history ttl (ms)
--       7 meta ttl (ms)             8 idempotency ttl (ms)
--       9 room key                 10 event count
--      11 the events, one after another: "<id, maybe empty> <accepted_ns>
--          <skip history 1/0> <index of its idempotency key in KEYS, 0: none>
--          <envelope flags> <body length>\n<body>"
--          (one argument for them all: the client's cost is per argument)
-- Returns the room's epoch, then per event its offset, or for an idempotent
-- repeat {offset, epoch, id} of the first publish with its key (the node
-- knows its own events' ids; a reply of one integer per event is the
-- cheapest for it to read).
--
-- One message per run: "v1 <offset> <epoch> <accepted_ns> <flags> <room key>\n<body>"
-- for one event, "v2 <count> <epoch> <room key>\n" then per event
-- "<offset> <accepted_ns> <flags> <body length>\n<body>" for several
-- (envelope.py). accepted_ns stays a string: Lua numbers are doubles.

local meta, log = KEYS[1], KEYS[2]
local publish, channel, feed = ARGV[1], ARGV[2], ARGV[3]
local size, ttl = tonumber(ARGV[5]), ARGV[6]
local meta_ttl, idempotency_ttl = ARGV[7], ARGV[8]
local room, count = ARGV[9], tonumber(ARGV[10])

local state = redis.call('HMGET', meta, 'epoch', 'top')
local epoch, top = state[1], tonumber(state[2])
if not epoch then
  -- A new room, or one whose position expired or was lost: a new epoch,
  -- and no history of an old epoch may be served under it.
  epoch, top = ARGV[4], 0
  redis.call('DEL', log)
end

-- A cluster has no sharded pattern subscription: events also go to their
-- slot's feed channel, but only while a node follows patterns on this shard.
local to_feed = feed ~= '' and redis.call('PUBSUB', 'SHARDNUMSUB', feed)[2] > 0
local now = redis.call('TIME')
local stored_at = string.format('%d', now[1] * 1000 + math.floor(now[2] / 1000))

local results = {epoch}
local stored = false
local records = {}  -- per event published: offset text, accepted_ns, flags, body
local packed, position = ARGV[11], 1
for i = 1, count do
  local newline = string.find(packed, '\n', position, true)
  local id, accepted_ns, skip, key_index, flags, length = string.match(
    string.sub(packed, position, newline - 1), '^(%S*) (%d+) ([01]) (%d+) (%d+) (%d+)$')
  position = newline + 1 + tonumber(length)
  local body = string.sub(packed, newline + 1, position - 1)
  key_index = tonumber(key_index)
  local earlier = key_index > 0 and redis.call('GET', KEYS[key_index])
  if earlier then
    -- "<offset> <epoch> <id>" of the first publish with this key.
    local first_offset, first_epoch, first_id = string.match(earlier, '^(%d+) (%S*) (.*)$')
    results[#results + 1] = {tonumber(first_offset), first_epoch, first_id}
  else
    local offset = 0
    if skip == '0' and size > 0 then
      top = top + 1
      offset = top
      redis.call('XADD', log, 'MAXLEN', '~', size, string.format('%d-0', offset),
        'd', body, 't', stored_at)
      stored = true
    end
    local text = string.format('%d', offset)
    records[#records + 1] = {text, accepted_ns, flags, body}
    if key_index > 0 then
      redis.call('SET', KEYS[key_index], text .. ' ' .. epoch .. ' ' .. id, 'PX', idempotency_ttl)
    end
    results[#results + 1] = offset
  end
end

local message
if #records == 1 then
  local r = records[1]
  message = 'v1 ' .. r[1] .. ' ' .. epoch .. ' ' .. r[2] .. ' ' .. r[3] .. ' ' .. room .. '\n' .. r[4]
elseif #records > 1 then
  local parts = {'v2 ' .. #records .. ' ' .. epoch .. ' ' .. room .. '\n'}
  for _, r in ipairs(records) do
    parts[#parts + 1] = r[1] .. ' ' .. r[2] .. ' ' .. r[3] .. ' ' .. #r[4] .. '\n'
    parts[#parts + 1] = r[4]
  end
  message = table.concat(parts)
end
if message then
  redis.call(publish, channel, message)
  if to_feed then
    redis.call(publish, feed, message)
  end
end

redis.call('HSET', meta, 'epoch', epoch, 'top', string.format('%d', top),
  'size', ARGV[5], 'ttl', ttl)
redis.call('PEXPIRE', meta, meta_ttl)
if stored then
  redis.call('PEXPIRE', log, ttl)
end
return results
