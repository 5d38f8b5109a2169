#!/usr/bin/env bash
# Memory under two attacks by a logged-in client, against quicmq and
# mosquitto (each a fresh broker), with the broker's RSS from /proc:
#
#   slow reader: a client subscribes to slow/# with QoS 1 and never reads;
#     a publisher sends SLOW_N QoS 1 messages of SLOW_SIZE bytes; the
#     client then goes away. ROUNDS times, so memory that is not given back
#     adds up.
#   many subscriptions: a client sends SUBS subscriptions (1000 filters a
#     SUBSCRIBE), then goes away.
#
#   bash bench/memory.sh                 # table on stdout, progress on stderr
#   bash bench/memory.sh -o results.md   # table also written to results.md
#
# BIN_DIR takes quicmq-node and quicmq from there instead of a release
# build (CI runs it that way, tiny); MOSQUITTO=auto|install|skip as in
# bench/logins.sh. Fails (exit 1) when a publish is not acknowledged or a
# client misbehaves. Every process it starts is killed on exit; all
# traffic goes to 127.0.0.1; every load is bounded by a count and LIMIT s.
#
# Sizes (defaults in brackets): SLOW_N [2000]  SLOW_SIZE [262144]
#   ROUNDS [3]  SUBS [200000]  LIMIT [300]
set -euo pipefail

cd "$(dirname "$0")/.."

OUT_FILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o) OUT_FILE=$2; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "usage: bash bench/memory.sh [-o FILE]" >&2; exit 2 ;;
    esac
done

SLOW_N=${SLOW_N:-2000}
SLOW_SIZE=${SLOW_SIZE:-262144}
ROUNDS=${ROUNDS:-3}
SUBS=${SUBS:-200000}
LIMIT=${LIMIT:-300}
MOSQUITTO=${MOSQUITTO:-auto}

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_init memory

bench_binaries

# A raw MQTT 5 client over TCP that does one thing and then waits to be
# killed: `slow PORT ID` subscribes to slow/# (QoS 1) and never reads;
# `subs PORT ID N` sends N subscriptions and prints how many were granted.
cat >"$WORK/raw_client.py" <<'PY'
import socket, struct, sys, time

def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def string(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b

def packet(kind, body):
    return bytes([kind]) + varint(len(body)) + body

def read_packet(sock):
    first = sock.recv(1)
    if not first:
        raise SystemExit("closed by the broker")
    length, shift = 0, 0
    while True:
        b = sock.recv(1)[0]
        length += (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise SystemExit("closed by the broker")
        body += chunk
    return first[0], body

mode, port, client_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.create_connection(("127.0.0.1", port))
# CONNECT v5, clean start, keep alive 0, no properties.
sock.sendall(packet(0x10, string("MQTT") + bytes([5, 0x02]) + struct.pack("!H", 0) + b"\x00" + string(client_id)))
kind, body = read_packet(sock)
if kind >> 4 != 2 or body[1] != 0:
    raise SystemExit(f"CONNACK {body!r}")

def subscribe(packet_id, filters):
    payload = b"".join(string(f) + b"\x01" for f in filters)
    sock.sendall(packet(0x82, struct.pack("!H", packet_id) + b"\x00" + payload))

if mode == "slow":
    subscribe(1, ["slow/#"])
    kind, body = read_packet(sock)
    print("subscribed", flush=True)
    # Never read again: the broker's writes pile up.
    time.sleep(3600)
else:
    total, granted, packet_id = int(sys.argv[4]), 0, 0
    while packet_id * 1000 < total:
        packet_id += 1
        n = min(1000, total - (packet_id - 1) * 1000)
        subscribe(packet_id, [f"hoard/{packet_id}/{i}" for i in range(n)])
        while True:
            kind, body = read_packet(sock)
            if kind >> 4 == 9:
                break
        props_len = body[2]
        codes = body[3 + props_len:]
        granted += sum(1 for c in codes if c < 0x80)
    print(granted, flush=True)
    time.sleep(3600)
PY

# rss_mib PID FIELD: VmRSS or VmHWM of PID in MiB (one decimal).
rss_mib() { awk -v f="$2:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

ROWS=()
FAILED=0

# attack NAME PID PORT: both attacks against the broker PID on PORT.
attack() {
    local name=$1 pid=$2 port=$3 round start cpid ready granted
    sleep 1
    start=$(rss_mib "$pid" VmRSS)
    local slow_cells=""
    for round in $(seq 1 "$ROUNDS"); do
        python3 "$WORK/raw_client.py" slow "$port" "slow-$round" >"$WORK/slow.out" 2>&1 &
        cpid=$!
        PIDS+=("$cpid")
        for _ in $(seq 100); do
            ready=$(cat "$WORK/slow.out")
            [ -n "$ready" ] && break
            sleep 0.05
        done
        [ "$ready" = subscribed ] || { log "$name: slow reader: $ready"; FAILED=1; }
        if ! "$QUICMQ" bench pub -h 127.0.0.1 -p "$port" --transport tcp -c 1 -n "$SLOW_N" \
            -t slow/x -q 1 --size "$SLOW_SIZE" -d "$LIMIT" --json >"$WORK/pub.json" ||
            ! python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))
sys.exit(0 if s["errors"] == 0 and s["messages"] == int(sys.argv[2]) else f"publisher: {s}")' \
                "$WORK/pub.json" "$SLOW_N"; then
            log "$name: not every publish was acknowledged"
            FAILED=1
        fi
        local during
        during=$(rss_mib "$pid" VmRSS)
        stop_pid "$cpid"
        sleep 3
        slow_cells="$slow_cells ${during} → $(rss_mib "$pid" VmRSS);"
        log "$name round $round: RSS with the slow reader $during MiB, after it left $(rss_mib "$pid" VmRSS) MiB"
    done
    python3 "$WORK/raw_client.py" subs "$port" hoarder "$SUBS" >"$WORK/subs.out" 2>&1 &
    cpid=$!
    PIDS+=("$cpid")
    for _ in $(seq $((LIMIT * 10))); do
        granted=$(cat "$WORK/subs.out")
        [ -n "$granted" ] && break
        sleep 0.1
    done
    local subs_during
    subs_during=$(rss_mib "$pid" VmRSS)
    stop_pid "$cpid"
    sleep 3
    local row
    row="| $name | $start | ${slow_cells%;} | $(rss_mib "$pid" VmHWM) | ${granted:-?} of $SUBS | $subs_during → $(rss_mib "$pid" VmRSS) |"
    case "$granted" in '' | *[!0-9]*) log "$name: subscriber: $granted"; FAILED=1 ;; esac
    ROWS+=("$row")
    log "$name: $row"
}

# ---------------------------------------------------------------- quicmq
free_port
QPORT=$PORT
"$NODE" --data-dir "$WORK/quicmq-data" --tcp-addr "127.0.0.1:$QPORT" --quic-addr off \
    --routed-addr off --tls-addr off --grpc-addr 127.0.0.1:0 --admin-addr off \
    --allow-anonymous true --log error &
qpid=$!
PIDS+=("$qpid")
wait_tcp "$QPORT" "$qpid" || die "quicmq-node did not start"
attack "quicmq (defaults: 16 MiB per session queue, 1000 subscriptions)" "$qpid" "$QPORT"
stop_pid "$qpid"

# ---------------------------------------------------------------- mosquitto
if mosquitto_wanted; then
    version=$( (mosquitto -h 2>&1 || true) | sed -n "s/^mosquitto version //p" | head -1)
    free_port
    cat >"$WORK/mosquitto.conf" <<EOF
user root
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest none
max_connections -1
EOF
    mosquitto -c "$WORK/mosquitto.conf" &
    mpid=$!
    PIDS+=("$mpid")
    wait_tcp "$PORT" "$mpid" || die "mosquitto did not start"
    attack "mosquitto $version (defaults)" "$mpid" "$PORT"
else
    log "mosquitto not installed: left out"
fi

{
    echo "Slow reader: $ROUNDS rounds of $SLOW_N QoS 1 messages of $SLOW_SIZE bytes to a subscriber that never reads, which then goes away. Many subscriptions: $SUBS filters from one client, which then goes away. Broker RSS in MiB (VmRSS; peak is VmHWM)."
    echo
    echo "| broker | RSS at start | slow reader, per round: while it stays → after it left | RSS peak | subscriptions granted | many subscriptions: while it stays → after it left |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee ${OUT_FILE:+"$OUT_FILE"}
exit "$FAILED"
