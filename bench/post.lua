-- wrk script for bench/proxy.sh: alternates the two calls of one order,
-- each a POST of an 840-byte JSON body (fixed-width identifiers, padded):
--   POST /api/orders    {"order_id":"SO-…", …}                (ERP → WMS release)
--   POST /v2/shipments  {"reference":"SO-…","shipment_id":"SH-…", …} (WMS → carrier)
-- Order numbers start from a base taken from the clock so that successive
-- runs against one sidecar create new transactions rather than repeats.
--
-- PACE_MS (environment) > 0 makes every connection wait that many
-- milliseconds before each request: a bounded-rate load for the latency
-- runs (wrk measures latency from the moment the request is written, so
-- the pause is not counted).

local SIZE = 840
local n = 0
local base = (os.time() % 100000) * 100000
local pace = tonumber(os.getenv("PACE_MS") or "0") or 0
local headers = { ["Content-Type"] = "application/json" }

local order_doc = '{"order_id":"SO-%s","sales_org":"1000","distribution_channel":"10",'
  .. '"sold_to":"0001000123","ship_to":"0001000456","requested_delivery_date":"2026-11-30",'
  .. '"incoterms":"DAP","shipping_condition":"01","lines":['
  .. '{"line":10,"material":"MAT-00012345","quantity":4,"uom":"EA","plant":"1000","storage_location":"0001"},'
  .. '{"line":20,"material":"MAT-00067890","quantity":12,"uom":"EA","plant":"1000","storage_location":"0001"},'
  .. '{"line":30,"material":"MAT-00055511","quantity":1,"uom":"PAL","plant":"1000","storage_location":"0002"}],'
  .. '"note":"%s"}'

local shipment_doc = '{"reference":"SO-%s","shipment_id":"SH-%s-1","carrier":"UPS",'
  .. '"service":"EXPRESS_SAVER","ship_date":"2026-11-28",'
  .. '"ship_from":{"name":"DC Rotterdam","street":"Waalhaven 12","city":"Rotterdam","postal_code":"3089JH","country":"NL"},'
  .. '"ship_to":{"name":"ACME GmbH","street":"Hauptstrasse 1","city":"Berlin","postal_code":"10115","country":"DE"},'
  .. '"parcels":[{"weight_kg":2.4,"length_cm":40,"width_cm":30,"height_cm":20},'
  .. '{"weight_kg":7.9,"length_cm":60,"width_cm":40,"height_cm":40}],'
  .. '"note":"%s"}'

-- The full request text of each kind, split where the identifiers go, so
-- that a request costs a few concatenations (wrk on one core must outrun
-- the proxies: building each request with wrk.format and string.format
-- capped it near 20 k req/s).
local ID = "@@@@@@@@@@" -- as wide as %010d

local function pieces(method, path, template, ids)
  local args = {}
  for i = 1, ids do args[i] = ID end
  args[ids + 1] = ""
  local without = string.format(template, unpack(args))
  local fill = SIZE - #without
  if fill < 0 then error("document longer than " .. SIZE .. " bytes") end
  args[ids + 1] = string.rep("x", fill)
  local text = wrk.format(method, path, headers, string.format(template, unpack(args)))
  local parts, from = {}, 1
  while true do
    local at = string.find(text, ID, from, true)
    if not at then break end
    parts[#parts + 1] = string.sub(text, from, at - 1)
    from = at + #ID
  end
  parts[#parts + 1] = string.sub(text, from)
  return parts
end

local orders, shipments

init = function()
  orders = pieces("POST", "/api/orders", order_doc, 1)
  shipments = pieces("POST", "/v2/shipments", shipment_doc, 2)
end

request = function()
  local id = string.format("%010d", base + math.floor(n / 2))
  local p
  if n % 2 == 0 then
    p = orders
    n = n + 1
    return p[1] .. id .. p[2]
  end
  p = shipments
  n = n + 1
  return p[1] .. id .. p[2] .. id .. p[3]
end

if pace > 0 then
  delay = function()
    return pace
  end
end
