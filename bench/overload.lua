-- wrk script for bench/overload.py: one order per request for the hot item,
-- a fresh idempotency key each time, customers spread over 5,000 ids; every
-- answer's status is counted, and the 503s that carry Retry-After apart.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end

function init(args)
    math.randomseed(os.time() * 1000 + tid)
    prefix = "ovl-" .. tid .. "-" .. math.random(1, 1000000000) .. "-"
    counter = 0
    statuses = {}
    retry_after = 0
end

-- WRK_BROWSE=1: a sale's mix, each customer reads the product, then orders.
local browse = os.getenv("WRK_BROWSE") == "1"

function request()
    counter = counter + 1
    if browse and counter % 2 == 1 then
        return wrk.format("GET", "/api/products/hot")
    end
    local body = '{"sku":"hot","quantity":1,"customer":"c' .. (counter % 5000) .. '"}'
    return wrk.format("POST", "/api/orders",
        { ["Content-Type"] = "application/json", ["Idempotency-Key"] = prefix .. counter }, body)
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    if status == 503 and (headers["Retry-After"] or headers["retry-after"]) then
        retry_after = retry_after + 1
    end
end

function done(summary, latency, requests)
    local total = {}
    local with_retry_after = 0
    for _, thread in ipairs(threads) do
        for status, count in pairs(thread:get("statuses")) do
            total[status] = (total[status] or 0) + count
        end
        with_retry_after = with_retry_after + thread:get("retry_after")
    end
    local parts = {}
    for status, count in pairs(total) do
        table.insert(parts, '"' .. status .. '":' .. count)
    end
    io.write('STATUSES {' .. table.concat(parts, ",") .. '}\n')
    io.write('RETRY_AFTER ' .. with_retry_after .. '\n')
    io.write(string.format('LATENCY_US %d %d %d\n', latency:percentile(50), latency:percentile(99),
        latency.max))
    local e = summary.errors
    io.write(string.format('SOCKET_ERRORS %d %d %d %d\n', e.connect, e.read, e.write, e.timeout))
end
