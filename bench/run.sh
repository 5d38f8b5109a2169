#!/usr/bin/env bash
# Benchmark quicmq (QUIC, TCP, TLS) against mosquitto (TCP, TLS) on this
# machine with `quicmq bench`, and print the results as markdown tables.
#
#   bash bench/run.sh                 # tables on stdout, progress on stderr
#   bash bench/run.sh -o results.md   # tables also written to results.md
#
# What it does:
#   1. builds the release binaries (cargo build --release -p quicmq-node) and
#      copies them into a temp dir, so a rebuild meanwhile changes nothing
#      (BIN_DIR=DIR takes quicmq and quicmq-node from DIR instead);
#   2. measures mosquitto beside quicmq where it is installed (MOSQUITTO=
#      auto; install: apt-get it first; skip: quicmq only), installs jq if
#      missing;
#   3. for every case and target starts a FRESH broker on free 127.0.0.1
#      ports (quicmq-node with a temp data dir; mosquitto with its own config
#      in the temp dir, using the same certificate), runs `quicmq bench sub`
#      then `quicmq bench pub`, reads the broker's VmHWM/VmRSS from
#      /proc/PID/status, stops the broker;
#   4. measures memory per idle connection with `quicmq bench conn`.
# Every process it starts is killed on exit (trap EXIT); every load is
# bounded by a count and a time limit; all traffic goes to 127.0.0.1.
# The quicmq node it starts admits anonymous clients (--allow-anonymous).
# It exits 1 (after the tables) when any case had errors or delivered or
# held less than it should.
#
# Sizes can be changed through the environment (defaults in brackets):
#   FANIN_PUBS [20]  FANIN_N0 [25000]  FANIN_N1 [10000]   (messages per publisher)
#   FANOUT_SUBS [100]  FANOUT_N0 [5000]  FANOUT_N1 [2000]  (messages published)
#   LAT_RATE [1000]  LAT_SECS [10]                          (1-to-1 latency run)
#   CONNS [10000]  CONN_RATE [1000]  CONN_HOLD [10]  CONN_KEEPALIVE [5]  (idle connections)
#   PAYLOAD [64]  RECEIVE_MAXIMUM [1024]  QUEUE [1000000]
#   SUB_CAP [90]  PUB_CAP [30]  (seconds a subscriber / publisher may run)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

OUT_FILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o) OUT_FILE=$2; shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "usage: bash bench/run.sh [-o FILE]" >&2; exit 2 ;;
    esac
done

FANIN_PUBS=${FANIN_PUBS:-20}
FANIN_N0=${FANIN_N0:-25000}
FANIN_N1=${FANIN_N1:-10000}
FANOUT_SUBS=${FANOUT_SUBS:-100}
FANOUT_N0=${FANOUT_N0:-5000}
FANOUT_N1=${FANOUT_N1:-2000}
LAT_RATE=${LAT_RATE:-1000}
LAT_SECS=${LAT_SECS:-10}
CONNS=${CONNS:-10000}
CONN_RATE=${CONN_RATE:-1000}
CONN_HOLD=${CONN_HOLD:-10}
# MQTT keep alive of the idle connections: short, so PINGREQs flow during the hold.
CONN_KEEPALIVE=${CONN_KEEPALIVE:-5}
PAYLOAD=${PAYLOAD:-64}
RECEIVE_MAXIMUM=${RECEIVE_MAXIMUM:-1024}
QUEUE=${QUEUE:-1000000}
# Hard limits of one run (seconds).
PUB_CAP=${PUB_CAP:-30}
SUB_CAP=${SUB_CAP:-90}
IDLE=3


# ---------------------------------------------------------------- cleanup
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_init bench


# ---------------------------------------------------------------- tools
bench_binaries
if mosquitto_wanted; then
    WITH_MOSQUITTO=1
    MOSQUITTO_VERSION="$( (mosquitto -h 2>&1 || true) | sed -n "s/^mosquitto version //p" | head -1) (Debian package)"
else
    WITH_MOSQUITTO=0
    MOSQUITTO_VERSION="not measured (not installed; MOSQUITTO=install installs it)"
fi
command -v jq >/dev/null || { log "installing jq"; apt_install jq; }

# Enough file descriptors for the idle-connection runs (inherited by the
# brokers and the load generator).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 1000)) ]; then
    log "warning: open file limit $(ulimit -n) is below $CONNS connections"
fi

# ---------------------------------------------------------------- ports


# ---------------------------------------------------------------- certificate
# One development certificate for every broker: let quicmq-node generate it.
CERTS=$WORK/certs
mkdir -p "$CERTS"
free_port
(
    QUICMQ_ROUTED_ADDR=off QUICMQ_GRPC_ADDR=127.0.0.1:0 exec "$NODE" --data-dir "$CERTS/data" --quic-addr off \
        --tcp-addr "127.0.0.1:$PORT" --tls-addr off --admin-addr off --log error
) >"$CERTS/node.log" 2>&1 &
pid=$!
PIDS+=("$pid")
for _ in $(seq 100); do
    [ -s "$CERTS/data/dev-key.pem" ] && break
    sleep 0.05
done
sleep 0.2
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
forget_pid "$pid"
[ -s "$CERTS/data/dev-cert.pem" ] || die "quicmq-node did not generate a certificate: $(cat "$CERTS/node.log")"
CERT=$CERTS/cert.pem
KEY=$CERTS/key.pem
cp "$CERTS/data/dev-cert.pem" "$CERT"
cp "$CERTS/data/dev-key.pem" "$KEY"
chmod 644 "$CERT" "$KEY"
TLS_ARGS="--cafile $CERT --server-name localhost"

# ---------------------------------------------------------------- brokers
BROKER_PID=""
BROKER_ARGS="" # client flags for the current target
RUN=0

# start_broker TARGET: quicmq-quic | quicmq-tcp | quicmq-tls | mosquitto-tcp | mosquitto-tls
start_broker() {
    local target=$1 dir tcp tls quic
    RUN=$((RUN + 1))
    dir=$WORK/run$RUN
    mkdir -p "$dir"
    free_port; tcp=$PORT
    free_port; tls=$PORT
    case "$target" in
        quicmq-*)
            free_port; quic=$PORT
            (
                QUICMQ_ROUTED_ADDR=off QUICMQ_GRPC_ADDR=127.0.0.1:0 exec "$NODE" --data-dir "$dir/data" \
                    --quic-addr "127.0.0.1:$quic" --tcp-addr "127.0.0.1:$tcp" \
                    --tls-addr "127.0.0.1:$tls" --admin-addr off \
                    --cert "$CERT" --key "$KEY" --log warn \
                    --allow-anonymous true --max-queued-messages "$QUEUE"
            ) >"$dir/broker.log" 2>&1 &
            ;;
        mosquitto-*)
            cat >"$dir/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous true
persistence false
user root
log_dest stderr
log_type error
log_type warning
connection_messages false
max_inflight_messages $RECEIVE_MAXIMUM
max_queued_messages $QUEUE
set_tcp_nodelay true
listener $tcp 127.0.0.1
listener $tls 127.0.0.1
certfile $CERT
keyfile $KEY
EOF
            (exec mosquitto -c "$dir/mosquitto.conf") >"$dir/broker.log" 2>&1 &
            ;;
        *) die "unknown target $target" ;;
    esac
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    wait_tcp "$tcp" "$BROKER_PID" || die "$target did not start: $(cat "$dir/broker.log")"
    wait_tcp "$tls" "$BROKER_PID" || die "$target TLS did not start: $(cat "$dir/broker.log")"
    case "$target" in
        quicmq-quic) BROKER_ARGS="--transport quic -p $quic $TLS_ARGS" ;;
        *-tcp) BROKER_ARGS="--transport tcp -p $tcp" ;;
        *-tls) BROKER_ARGS="--transport tls -p $tls $TLS_ARGS" ;;
    esac
    RUN_DIR=$dir
}

# broker_mem FIELD: VmHWM or VmRSS of the broker, in KiB.
broker_mem() {
    awk -v f="$1:" '$1 == f { print $2 }' "/proc/$BROKER_PID/status"
}

stop_broker() {
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    forget_pid "$BROKER_PID"
    BROKER_PID=""
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }


# ---------------------------------------------------------------- load cases
TARGETS=(quicmq-quic quicmq-tcp quicmq-tls)
[ "$WITH_MOSQUITTO" = 1 ] && TARGETS+=(mosquitto-tcp mosquitto-tls)
ROWS=$WORK/rows.md
: >"$ROWS"

# run_case TITLE TARGET "SUB FLAGS" "PUB FLAGS"
run_case() {
    local title=$1 target=$2 sub_flags=$3 pub_flags=$4 sub_pid sub pub hwm rss
    start_broker "$target"
    # shellcheck disable=SC2086
    timeout $((SUB_CAP + 30)) "$QUICMQ" bench sub $BROKER_ARGS $sub_flags -t 'bench/#' \
        --idle "$IDLE" -d "$SUB_CAP" --receive-maximum "$RECEIVE_MAXIMUM" --json \
        >"$RUN_DIR/sub.json" 2>"$RUN_DIR/sub.err" &
    sub_pid=$!
    PIDS+=("$sub_pid")
    if ! wait_line "$RUN_DIR/sub.err" "subscribers ready" "$sub_pid" 60; then
        log "$title / $target: subscribers not ready: $(tail -3 "$RUN_DIR/sub.err")"
    fi
    # shellcheck disable=SC2086
    timeout $((PUB_CAP + 60)) "$QUICMQ" bench pub $BROKER_ARGS $pub_flags -t 'bench/%i' \
        -s "$PAYLOAD" --json >"$RUN_DIR/pub.json" 2>"$RUN_DIR/pub.err" || true
    wait "$sub_pid" 2>/dev/null || true
    forget_pid "$sub_pid"
    hwm=$(broker_mem VmHWM)
    rss=$(broker_mem VmRSS)
    stop_broker
    sub=$(tail -1 "$RUN_DIR/sub.json")
    pub=$(tail -1 "$RUN_DIR/pub.json")
    if [ -z "$sub" ] || ! jq -e . >/dev/null 2>&1 <<<"$sub"; then
        log "$title / $target: no subscriber summary: $(tail -3 "$RUN_DIR/sub.err")"
        sub='{}'
    fi
    if [ -z "$pub" ] || ! jq -e . >/dev/null 2>&1 <<<"$pub"; then
        log "$title / $target: no publisher summary: $(tail -3 "$RUN_DIR/pub.err")"
        pub='{}'
    fi
    local row
    row=$(jq -rn --argjson s "$sub" --argjson p "$pub" --arg t "$target" \
        --arg hwm "$(mib "$hwm")" --arg rss "$(mib "$rss")" '
        def n(x): if x == null then "—" else x end;
        def f(x): if x == null then "—" else (x * 10 | round / 10 | tostring) end;
        def g(x): if x == null then "—" else (x * 100 | round / 100 | tostring) end;
        "| \($t) | \(n($s.messages))/\(n($s.expected)) | \(f($s.rate)) | \(g($s.p50_ms)) | \(g($s.p99_ms)) | \(n($p.messages)) | \(f($p.rate)) | \((($s.errors // 0) + ($p.errors // 0))) | \($hwm) | \($rss) |"')
    echo "$row" >>"$ROWS.$title"
    log "$title / $target: $row"
    # Every message reaches the subscribers (each of them, for fan-out).
    check_delivered "case $title / $target" "$sub" "$pub"
}

declare -a CASES=(
    "1. QoS 0 fan-in, $FANIN_PUBS publishers → 1 subscriber ($FANIN_N0 msgs each)|-c 1 -q 0 -n $((FANIN_PUBS * FANIN_N0))|-c $FANIN_PUBS -q 0 -n $FANIN_N0 -d $PUB_CAP"
    "2. QoS 1 fan-in, $FANIN_PUBS publishers → 1 subscriber ($FANIN_N1 msgs each)|-c 1 -q 1 -n $((FANIN_PUBS * FANIN_N1))|-c $FANIN_PUBS -q 1 -n $FANIN_N1 -d $PUB_CAP"
    "3. QoS 0 fan-out, 1 publisher → $FANOUT_SUBS subscribers ($FANOUT_N0 msgs)|-c $FANOUT_SUBS -q 0 -n $FANOUT_N0|-c 1 -q 0 -n $FANOUT_N0 -d $PUB_CAP"
    "4. QoS 1 fan-out, 1 publisher → $FANOUT_SUBS subscribers ($FANOUT_N1 msgs)|-c $FANOUT_SUBS -q 1 -n $FANOUT_N1|-c 1 -q 1 -n $FANOUT_N1 -d $PUB_CAP"
    "5. 1-to-1 latency, QoS 1 at $LAT_RATE msgs/s for $LAT_SECS s|-c 1 -q 1 -n $((LAT_RATE * LAT_SECS))|-c 1 -q 1 -r $LAT_RATE -d $LAT_SECS"
)

declare -a TITLES=()
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)
i=0
for case in "${CASES[@]}"; do
    i=$((i + 1))
    IFS='|' read -r title sub_flags pub_flags <<<"$case"
    TITLES[$i]=$title
    for target in "${TARGETS[@]}"; do
        log "case $title / $target"
        run_case "$i" "$target" "$sub_flags" "$pub_flags"
    done
done

# ---------------------------------------------------------------- idle connections
CONN_ROWS=$WORK/conn.md
: >"$CONN_ROWS"
run_conns() {
    local target=$1 before held pid out err
    start_broker "$target"
    sleep 1
    before=$(broker_mem VmRSS)
    out=$RUN_DIR/conn.json
    err=$RUN_DIR/conn.err
    # shellcheck disable=SC2086
    timeout $((CONNS / CONN_RATE + CONN_HOLD + 120)) "$QUICMQ" bench conn $BROKER_ARGS \
        -c "$CONNS" --rate "$CONN_RATE" -d "$CONN_HOLD" -k "$CONN_KEEPALIVE" --json \
        >"$out" 2>"$err" &
    pid=$!
    PIDS+=("$pid")
    if wait_line "$err" "connections open" "$pid" $((CONNS / CONN_RATE + 90)); then
        sleep 3
        held=$(broker_mem VmRSS)
    else
        log "conn / $target: never reported its connections open: $(tail -3 "$err")"
        held=$before
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
    stop_broker
    local summary row
    summary=$(tail -1 "$out")
    [ -n "$summary" ] && jq -e . >/dev/null 2>&1 <<<"$summary" || summary='{}'
    row=$(jq -rn --argjson s "$summary" --arg t "$target" --argjson before "$before" \
        --argjson held "$held" '
        def n(x): if x == null then "—" else x end;
        def g(x): if x == null then "—" else (x * 100 | round / 100 | tostring) end;
        "| \($t) | \(n($s.connected))/\(n($s.clients)) | \(n($s.held)) | \(n($s.errors)) | \(g($s.p50_ms)) | \(g($s.p99_ms)) | \($before / 1024 * 10 | round / 10) | \($held / 1024 * 10 | round / 10) | \(if ($s.held // 0) > 0 then (($held - $before) / $s.held * 10 | round / 10) else "—" end) |"')
    echo "$row" >>"$CONN_ROWS"
    log "conn / $target: $row"
    if ! jq -e --argjson s "$summary" -n '($s.clients != null) and ($s.held == $s.clients) and (($s.errors // 0) == 0)' >/dev/null; then
        FAILURES+=("idle connections / $target: held $(jq -r '.held // "none"' <<<"$summary") of $CONNS")
    fi
}
CONN_TARGETS=(quicmq-quic quicmq-tcp)
[ "$WITH_MOSQUITTO" = 1 ] && CONN_TARGETS+=(mosquitto-tcp)
for target in "${CONN_TARGETS[@]}"; do
    log "idle connections: $CONNS to $target"
    run_conns "$target"
done
FINISHED=$(date +%s)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain -- node proto Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    COMMIT="$COMMIT (with uncommitted changes)"
fi
report() {
    echo "## Results"
    echo
    echo "- command: \`bash bench/run.sh\`"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)"
    echo "- quicmq: commit $COMMIT, ${BIN_DIR:+binaries from $BIN_DIR, not }release build"
    echo "- mosquitto: $MOSQUITTO_VERSION"
    echo "- payload $PAYLOAD bytes; MQTT 5.0; subscribers announce Receive Maximum $RECEIVE_MAXIMUM; queues $QUEUE messages per session"
    echo "- load runs: $((FINISHED - STARTED)) s; load average (1/5/15 min) before $LOAD_BEFORE, after $LOAD_AFTER"
    echo
    echo "Columns: delivered/expected and msgs/s at the subscriber(s) (first to last"
    echo "message, all subscribers together); p50/p99 end-to-end latency in ms; messages"
    echo "the publishers completed (QoS 0 written, QoS 1 acknowledged) and their rate;"
    echo "errors of both sides; broker peak (VmHWM) and final (VmRSS) resident memory in MiB."
    local i
    for i in "${!TITLES[@]}"; do
        echo
        echo "### ${TITLES[$i]}"
        echo
        echo "| broker / transport | delivered | msgs/s | p50 ms | p99 ms | published | pub msgs/s | errors | peak RSS MiB | RSS MiB |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        cat "$ROWS.$i"
    done
    echo
    echo "### 6. Idle connections: $CONNS opened at $CONN_RATE/s, held $CONN_HOLD s (keep alive $CONN_KEEPALIVE s)"
    echo
    echo "| broker / transport | connected | still open after hold | errors | connect p50 ms | connect p99 ms | RSS before MiB | RSS with connections MiB | KiB per connection |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    cat "$CONN_ROWS"
}
report | tee ${OUT_FILE:+"$OUT_FILE"}
finish_checks "every case delivered what was sent"
