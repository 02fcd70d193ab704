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

local order_doc = '{"order_id":"SO-%010d","sales_org":"1000","distribution_channel":"10",'
  .. '"sold_to":"0001000123","ship_to":"0001000456","requested_delivery_date":"2026-11-30",'
  .. '"incoterms":"DAP","shipping_condition":"01","lines":['
  .. '{"line":10,"material":"MAT-00012345","quantity":4,"uom":"EA","plant":"1000","storage_location":"0001"},'
  .. '{"line":20,"material":"MAT-00067890","quantity":12,"uom":"EA","plant":"1000","storage_location":"0001"},'
  .. '{"line":30,"material":"MAT-00055511","quantity":1,"uom":"PAL","plant":"1000","storage_location":"0002"}],'
  .. '"note":"%s"}'

local shipment_doc = '{"reference":"SO-%010d","shipment_id":"SH-%010d-1","carrier":"UPS",'
  .. '"service":"EXPRESS_SAVER","ship_date":"2026-11-28",'
  .. '"ship_from":{"name":"DC Rotterdam","street":"Waalhaven 12","city":"Rotterdam","postal_code":"3089JH","country":"NL"},'
  .. '"ship_to":{"name":"ACME GmbH","street":"Hauptstrasse 1","city":"Berlin","postal_code":"10115","country":"DE"},'
  .. '"parcels":[{"weight_kg":2.4,"length_cm":40,"width_cm":30,"height_cm":20},'
  .. '{"weight_kg":7.9,"length_cm":60,"width_cm":40,"height_cm":40}],'
  .. '"note":"%s"}'

-- Formats `template` with `ids` and pads its `"note"` so the document is
-- exactly SIZE bytes.
local function build(template, a, b)
  local without
  if b then without = string.format(template, a, b, "") else without = string.format(template, a, "") end
  local fill = SIZE - #without
  if fill < 0 then error("document longer than " .. SIZE .. " bytes") end
  if b then return string.format(template, a, b, string.rep("x", fill)) end
  return string.format(template, a, string.rep("x", fill))
end

request = function()
  local order = base + math.floor(n / 2)
  local req
  if n % 2 == 0 then
    local body = build(order_doc, order)
    req = wrk.format("POST", "/api/orders", headers, body)
  else
    local body = build(shipment_doc, order, order)
    req = wrk.format("POST", "/v2/shipments", headers, body)
  end
  n = n + 1
  return req
end

if pace > 0 then
  delay = function()
    return pace
  end
end
