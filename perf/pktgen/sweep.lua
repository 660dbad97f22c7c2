-- Pktgen-DPDK Lua: sweep vsd's four forwarding methods and three flow counts, one-arm
-- (vsd-onearm.toml), and print one line per point: tx and rx Mpps on port 0.
--   pktgen ... -- -P -m "[1].0" -f perf/pktgen/sweep.lua
-- Run with Pktgen 23.03.0 built with Lua 5.3 (README.md, "Run on this VM"). portStats
-- changed shape over releases: rx_tx() below reads both. The flow counts are real only
-- with a range pool of at least 1001000 mbufs (README: PG_RANGE_MBUFS); a stock Pktgen
-- sends 24576 flows at the 100K and 1M points. vsd keeps every point's connections
-- (UDP: 300 s), 1001000 per method: size its table for 4M (vsd-onearm.toml).

-- The `pktgen` table is a global set up by Pktgen itself. Pktgen.lua (found only when run
-- from Pktgen's source directory) just adds helpers this script does not use.
package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
pcall(require, "Pktgen")

local port = "0"
local seconds = 10          -- measurement per point
local prime_seconds = 3     -- traffic before measuring: vsd creates the flows
local build_wait_seconds = 90  -- longest wait for Pktgen to build the range packets
local flowing_packets = 100000 -- sent since start: the range packets are built
local vsd_mac = "02:00:00:00:10:01"
local modes = { {"dr", 80}, {"tun", 81}, {"nat", 82}, {"fullnat", 83} }
-- flows, addresses, ports (coprime: the range pattern repeats after addresses x ports)
local flow_sets = {
    {1000, "198.19.3.231", 1024},
    {100400, "198.19.1.143", 1274},
    {1001000, "198.19.3.231", 2024},
}

local function range4(fn, start, min, max, inc)
    fn(port, "start", start)
    fn(port, "min", min)
    fn(port, "max", max)
    fn(port, "inc", inc)
end

local function rx_tx()
    local s = pktgen.portStats(port, "port")
    local p = s[0] or s[tonumber(port)]
    if p.curr ~= nil then p = p.curr end
    return p.ipackets, p.opackets
end

pktgen.stop(port)
pktgen.set_ipaddr(port, "src", "198.18.0.11/24")
pktgen.set_mac(port, "dst", vsd_mac)
pktgen.process(port, "on")          -- answer vsd's ARP for 198.18.0.11
pktgen.set(port, "rate", 100)
pktgen.range.ip_proto(port, "udp")  -- set_proto would set the single-packet proto only
range4(pktgen.range.pkt_size, 64, 64, 64, 0)
range4(pktgen.range.dst_mac, vsd_mac, vsd_mac, vsd_mac, "00:00:00:00:00:00")
range4(pktgen.range.dst_ip, "198.18.0.100", "198.18.0.100", "198.18.0.100", "0.0.0.0")
pktgen.set_range(port, "on")

print("mode     flows      tx_mpps  rx_mpps")
for _, m in ipairs(modes) do
    for _, f in ipairs(flow_sets) do
        range4(pktgen.range.dst_port, m[2], m[2], m[2], 0)
        range4(pktgen.range.src_ip, "198.19.0.0", "198.19.0.0", f[2], "0.0.0.1")
        range4(pktgen.range.src_port, 1024, 1024, f[3], 1)
        -- Pktgen builds the range packets (one per mbuf of the range pool) on the first
        -- send after start: with a 1M-mbuf pool (README: PG_RANGE_MBUFS) that takes
        -- seconds, so wait until packets flow before priming. Its port totals are
        -- refreshed once a second: read the baseline after they have settled.
        local _, t0 = rx_tx()
        pktgen.start(port)
        for _ = 1, build_wait_seconds * 10 do
            pktgen.delay(100)
            local _, t1 = rx_tx()
            if t1 - t0 >= flowing_packets then break end
        end
        pktgen.delay(prime_seconds * 1000)
        local rx0, tx0 = rx_tx()
        pktgen.delay(seconds * 1000)
        local rx1, tx1 = rx_tx()
        pktgen.stop(port)
        pktgen.delay(1500)
        print(string.format("%-8s %-10d %7.3f  %7.3f", m[1], f[1],
            (tx1 - tx0) / seconds / 1e6, (rx1 - rx0) / seconds / 1e6))
    end
end
