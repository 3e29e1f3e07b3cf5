-- wrk script: one order per request for the hot item, a fresh idempotency
-- key each time, customers spread over 5,000 ids.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end

function init(args)
    math.randomseed(os.time() * 1000 + tid)
    prefix = "wrk-" .. tid .. "-" .. math.random(1, 1000000000) .. "-"
    counter = 0
    sku = os.getenv("SKU") or "hot"
end

function request()
    counter = counter + 1
    local body = '{"sku":"' .. sku .. '","quantity":1,"customer":"c' .. (counter % 5000) .. '"}'
    return wrk.format("POST", "/api/orders",
        { ["Content-Type"] = "application/json", ["Idempotency-Key"] = prefix .. counter }, body)
end
