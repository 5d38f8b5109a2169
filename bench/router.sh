#!/usr/bin/env bash
# Benchmark the quicmq router on this machine and print the results as
# markdown tables: its forwarding rate (datagrams/s, and per core of router
# CPU) and the latency it adds to MQTT over QUIC (direct vs through it).
#
#   bash bench/router.sh                 # tables on stdout, progress on stderr
#   bash bench/router.sh -o results.md   # tables also written to results.md
#
# What it does:
#   1. builds the release binaries (cargo build --release -p quicmq-node
#      -p quicmq-router) and the router's `forwarding` bench target
#      (cargo bench --no-run), and copies them into a temp dir, so a rebuild
#      meanwhile changes nothing (BIN_DIR=DIR: quicmq, quicmq-node and
#      quicmq-router from DIR, and the generator in the debug profile);
#      installs jq with apt-get if missing;
#   2. forwarding rate: for every case runs the `forwarding` generator
#      (router/benches/forwarding.rs), which starts the real quicmq-router
#      binary in front of fake nodes (UDP sinks in the generator process that
#      answer health probes), floods it with QUIC-shaped datagrams from
#      sender sockets for a bounded time, verifies every datagram that
#      reaches a node (PROXY v2 envelope, intact, the node its connection ID
#      names) and reports datagrams/s, loss and the router's CPU time from
#      /proc/PID/stat;
#   3. added latency: LAT_ROUNDS times, alternately, a FRESH quicmq-node
#      measured directly over QUIC (its --quic-addr), and a FRESH quicmq-node
#      of the same configuration behind a FRESH quicmq-router (clients talk
#      to the router, the node only through its --routed-addr): `quicmq bench
#      sub` then `quicmq bench pub` 1 -> 1 at a fixed rate, QoS 1.
# Every process it starts is killed on exit (trap EXIT); every load is
# bounded by a count and a time limit; all traffic goes to 127.0.0.1.
# It exits 1 (after the tables) when a datagram was misrouted or mangled, a
# paced case lost any, or a latency run had errors or delivered less.
#
# Sizes can be changed through the environment (defaults in brackets):
#   FWD_SECS [5]  FWD_COUNT [2000000]  FWD_SIZE [1200]  FWD_NODES [2]
#   FWD_PACED_RATES ["50000 100000"]   (datagrams/s of the paced cases)
#   LAT_RATE [1000]  LAT_SECS [10]  LAT_ROUNDS [2]  PAYLOAD [64]
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

OUT_FILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o) OUT_FILE=$2; shift 2 ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "usage: bash bench/router.sh [-o FILE]" >&2; exit 2 ;;
    esac
done

FWD_SECS=${FWD_SECS:-5}
FWD_COUNT=${FWD_COUNT:-2000000}
FWD_SIZE=${FWD_SIZE:-1200}
FWD_NODES=${FWD_NODES:-2}
FWD_PACED_RATES=${FWD_PACED_RATES:-50000 100000}
LAT_RATE=${LAT_RATE:-1000}
LAT_SECS=${LAT_SECS:-10}
LAT_ROUNDS=${LAT_ROUNDS:-2}
PAYLOAD=${PAYLOAD:-64}
RECEIVE_MAXIMUM=1024
# Hard limits of one run (seconds).
SUB_CAP=$((LAT_SECS + 60))
IDLE=3
# One cluster's shared secrets (any 64 / 32 hex digits).
RESET_KEY=5d1b0f1c2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5
LB_KEY=8f95f09245765f80256934e50c66207f


# ---------------------------------------------------------------- cleanup
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_init router-bench


# ---------------------------------------------------------------- tools
command -v jq >/dev/null || { log "installing jq"; apt_install jq; }

if [ -n "${BIN_DIR:-}" ]; then
    # The generator in the same (debug) profile: cargo test builds a bench
    # target with the test profile.
    log "building the forwarding generator (cargo test --bench forwarding --no-run)"
    GEN_BUILT=$(cargo test -p quicmq-router --bench forwarding --no-run --message-format=json |
        jq -r 'select(.reason == "compiler-artifact" and .target.name == "forwarding" and .executable != null) | .executable' |
        tail -1)
    BUILT=$BIN_DIR
else
    log "building release binaries"
    cargo build --release -p quicmq-node -p quicmq-router >&2
    log "building the forwarding generator (cargo bench --no-run)"
    GEN_BUILT=$(cargo bench -p quicmq-router --bench forwarding --no-run --message-format=json |
        jq -r 'select(.reason == "compiler-artifact" and .target.name == "forwarding" and .executable != null) | .executable' |
        tail -1)
    BUILT=target/release
fi
[ -x "$GEN_BUILT" ] || die "cargo did not report the forwarding executable"
mkdir -p "$WORK/bin"
cp "$BUILT/quicmq" "$BUILT/quicmq-node" "$BUILT/quicmq-router" "$WORK/bin/"
cp "$GEN_BUILT" "$WORK/bin/forwarding"
QUICMQ=$WORK/bin/quicmq
NODE=$WORK/bin/quicmq-node
ROUTER=$WORK/bin/quicmq-router
GEN=$WORK/bin/forwarding

# ---------------------------------------------------------------- ports


# http_ok PORT PATH: whether GET PATH on 127.0.0.1:PORT answers 200.
http_ok() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
        read -r status <&3 || exit 1
        case "$status" in "HTTP/1.1 200"*) exit 0 ;; *) exit 1 ;; esac
    ) 2>/dev/null
}

# router_datagrams PORT: datagrams the router on admin port PORT forwarded to
# nodes plus those it returned to clients, from its /metrics.
router_datagrams() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
        cat <&3
    ) 2>/dev/null | tr -d '\r' |
        awk '/^quicmq_router_(forwarded|returned)_packets_total/ { s += $NF } END { printf "%d", s }'
}


# note_others CASE: remember CASE if a compiler (another job) is running
# now: its numbers are disturbed, and the report says so.
DISTURBED=""
note_others() {
    if pgrep -x rustc >/dev/null || pgrep -x rust-lld >/dev/null || pgrep -x cc1 >/dev/null; then
        log "warning: another job is compiling during \"$1\": its numbers are disturbed"
        case "$DISTURBED" in *"\"$1\""*) ;; *) DISTURBED="$DISTURBED \"$1\"" ;; esac
    fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)

# ---------------------------------------------------------------- forwarding rate
FWD_ROWS=$WORK/forwarding.md
: >"$FWD_ROWS"

# run_forwarding TITLE SENDERS INITIAL_PCT RATE (0 = full speed)
run_forwarding() {
    local title=$1 senders=$2 pct=$3 rate=$4 out err row
    out=$WORK/fwd-$RANDOM.json
    err=${out%.json}.err
    log "forwarding: $title"
    note_others "$title"
    if ! timeout $((FWD_SECS + 60)) "$GEN" --router "$ROUTER" --json \
        --nodes "$FWD_NODES" --senders "$senders" --initial-pct "$pct" --rate "$rate" \
        --duration "$FWD_SECS" --count "$FWD_COUNT" --size "$FWD_SIZE" >"$out" 2>"$err"; then
        log "forwarding: $title: the generator failed: $(tail -3 "$err")"
    fi
    if [ ! -s "$out" ] || ! jq -e . >/dev/null 2>&1 <"$out"; then
        echo '{}' >"$out"
    fi
    row=$(jq -r --arg t "$title" '
        def n(x): if x == null then "—" else x end;
        def f(x; d): if x == null then "—" else (x * d | round / d | tostring) end;
        "| \($t) | \(n(.sent)) | \(n(.forwarded)) | \(f(.loss_pct; 100)) | \(f(.rate; 1)) | \(f(.mbit_s; 1)) | \(f(.router_cpu_s; 100)) | \(f(.router_cpu_pct; 1)) | \(if .per_core == null then "—" else (.per_core / 1000 | round | tostring) + " k" end) | \(f(.generator_cpu_s; 100)) | \(f(.machine_busy_pct; 1)) | \(n(.lost_before_router)) / \(n(.lost_after_router)) | \(if .misrouted == null then "—" else (.misrouted + .bad_envelope + .mangled | tostring) end) |"' "$out")
    note_others "$title"
    echo "$row" >>"$FWD_ROWS"
    log "forwarding: $row"
    # Loss at full speed is what is measured; a datagram that reached the
    # wrong node or arrived mangled is a failure, as is a paced case that
    # lost anything or a run without a report.
    if ! jq -e --argjson rate "$rate" '(.forwarded // 0) > 0
        and (.misrouted + .bad_envelope + .mangled == 0)
        and ($rate == 0 or .loss_pct == 0)' "$out" >/dev/null 2>&1; then
        FAILURES+=("forwarding: $title")
    fi
}

run_forwarding "1-RTT only, 1 sender, full speed" 1 0 0
run_forwarding "1-RTT only, 2 senders, full speed" 2 0 0
run_forwarding "10 % Initials, 2 senders, full speed" 2 10 0
for rate in $FWD_PACED_RATES; do
    run_forwarding "10 % Initials, 2 senders, paced $rate/s" 2 10 "$rate"
done

# ---------------------------------------------------------------- added latency
LAT_ROWS=$WORK/latency.md
: >"$LAT_ROWS"
LAT_JSON=$WORK/latency.jsonl
: >"$LAT_JSON"
RUN=0

# run_latency ROUND PATH: PATH is direct | router
run_latency() {
    local round=$1 path=$2 dir quic routed tcp listen admin node_pid router_pid=""
    local port sub_pid sub pub row
    RUN=$((RUN + 1))
    dir=$WORK/lat$RUN
    mkdir -p "$dir"
    free_port; quic=$PORT
    free_port; routed=$PORT
    free_port; tcp=$PORT
    (
        exec "$NODE" --data-dir "$dir/data" --node-id 1 --grpc-addr 127.0.0.1:0 \
            --reset-key "$RESET_KEY" --quic-lb-key "$LB_KEY" \
            --quic-addr "127.0.0.1:$quic" --routed-addr "127.0.0.1:$routed" \
            --tcp-addr "127.0.0.1:$tcp" --tls-addr off --admin-addr off --log warn
    ) >"$dir/node.log" 2>&1 &
    node_pid=$!
    PIDS+=("$node_pid")
    wait_tcp "$tcp" "$node_pid" || die "quicmq-node did not start: $(cat "$dir/node.log")"
    port=$quic
    if [ "$path" = router ]; then
        free_port; listen=$PORT
        free_port; admin=$PORT
        (
            exec "$ROUTER" --listen "127.0.0.1:$listen" --internal-addr 127.0.0.1:0 \
                --admin-addr "127.0.0.1:$admin" --reset-key "$RESET_KEY" \
                --quic-lb-key "$LB_KEY" --node "0001=127.0.0.1:$routed" --log warn
        ) >"$dir/router.log" 2>&1 &
        router_pid=$!
        PIDS+=("$router_pid")
        local _ ready=false
        for _ in $(seq 200); do
            kill -0 "$router_pid" 2>/dev/null || break
            if http_ok "$admin" /health/ready; then ready=true; break; fi
            sleep 0.05
        done
        $ready || die "quicmq-router saw no live node: $(cat "$dir/router.log")"
        port=$listen
    fi
    local client="--transport quic -p $port --cafile $dir/data/dev-cert.pem --server-name localhost"
    # shellcheck disable=SC2086
    timeout $((SUB_CAP + 30)) "$QUICMQ" bench sub $client -c 1 -q 1 -n $((LAT_RATE * LAT_SECS)) \
        -t 'bench/#' --idle "$IDLE" -d "$SUB_CAP" --receive-maximum "$RECEIVE_MAXIMUM" --json \
        >"$dir/sub.json" 2>"$dir/sub.err" &
    sub_pid=$!
    PIDS+=("$sub_pid")
    if ! wait_line "$dir/sub.err" "subscribers ready" "$sub_pid" 60; then
        log "latency $round / $path: subscriber not ready: $(tail -3 "$dir/sub.err")"
    fi
    # shellcheck disable=SC2086
    timeout $((LAT_SECS + 60)) "$QUICMQ" bench pub $client -c 1 -q 1 -r "$LAT_RATE" -d "$LAT_SECS" \
        -t 'bench/%i' -s "$PAYLOAD" --json >"$dir/pub.json" 2>"$dir/pub.err" || true
    wait "$sub_pid" 2>/dev/null || true
    forget_pid "$sub_pid"
    local router_cpu="—" router_dgrams="—"
    if [ -n "$router_pid" ]; then
        router_dgrams=$(router_datagrams "$admin")
        # utime + stime of the router over the whole run, in seconds.
        router_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%.2f", (f[12] + f[13]) / hz }' "/proc/$router_pid/stat" 2>/dev/null || echo "—")
        kill "$router_pid" 2>/dev/null || true
        wait "$router_pid" 2>/dev/null || true
        forget_pid "$router_pid"
    fi
    kill "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    forget_pid "$node_pid"
    sub=$(tail -1 "$dir/sub.json")
    pub=$(tail -1 "$dir/pub.json")
    if [ -z "$sub" ] || ! jq -e . >/dev/null 2>&1 <<<"$sub"; then
        log "latency $round / $path: no subscriber summary: $(tail -3 "$dir/sub.err")"
        sub='{}'
    fi
    if [ -z "$pub" ] || ! jq -e . >/dev/null 2>&1 <<<"$pub"; then
        log "latency $round / $path: no publisher summary: $(tail -3 "$dir/pub.err")"
        pub='{}'
    fi
    jq -cn --argjson s "$sub" --argjson p "$pub" --arg path "$path" --argjson round "$round" \
        '{round: $round, path: $path, e2e_p50: $s.p50_ms, e2e_p99: $s.p99_ms, ack_p50: $p.p50_ms, ack_p99: $p.p99_ms}' >>"$LAT_JSON"
    row=$(jq -rn --argjson s "$sub" --argjson p "$pub" --arg path "$path" --arg r "$round" \
        --arg cpu "$router_cpu" --arg dgrams "$router_dgrams" '
        def n(x): if x == null then "—" else x end;
        def g(x): if x == null then "—" else (x * 1000 | round / 1000 | tostring) end;
        "| \($r) | \($path) | \(n($p.messages)) | \(n($s.messages))/\(n($s.expected)) | \(g($s.p50_ms)) | \(g($s.p99_ms)) | \(g($p.p50_ms)) | \(g($p.p99_ms)) | \((($s.errors // 0) + ($p.errors // 0))) | \($dgrams) | \($cpu) |"')
    echo "$row" >>"$LAT_ROWS"
    log "latency: $row"
    check_delivered "latency round $round / $path" "$sub" "$pub"
}

for round in $(seq "$LAT_ROUNDS"); do
    for path in direct router; do
        log "latency round $round: $path"
        note_others "latency round $round"
        run_latency "$round" "$path"
        note_others "latency round $round"
    done
done
FINISHED=$(date +%s)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain -- node proto router Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    COMMIT="$COMMIT (with uncommitted changes)"
fi
report() {
    echo "### Router results"
    echo
    echo "- command: \`bash bench/router.sh\`"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr); net.core.rmem_default $(cat /proc/sys/net/core/rmem_default), rmem_max $(cat /proc/sys/net/core/rmem_max)"
    echo "- quicmq: commit $COMMIT, ${BIN_DIR:+binaries from $BIN_DIR, not }release build"
    echo "- load runs: $((FINISHED - STARTED)) s; load average (1/5/15 min) before $LOAD_BEFORE, after $LOAD_AFTER"
    if [ -n "$DISTURBED" ]; then
        echo "- **disturbed**: another job was compiling during$DISTURBED; rerun on a quiet machine"
    else
        echo "- no compiler (another job) was running at the start or end of any case"
    fi
    echo
    echo "#### Forwarding rate: $FWD_NODES nodes, $FWD_SIZE-octet datagrams, $FWD_SECS s (at most $FWD_COUNT datagrams) per case"
    echo
    echo "Columns: datagrams sent and forwarded (received by the fake nodes, every one"
    echo "verified); loss; forwarded datagrams/s and Mbit/s (QUIC octets, envelope"
    echo "excluded) from the first send to the last arrival; the router process's CPU"
    echo "time (utime + stime, all threads) and its share of one core; forwarded"
    echo "datagrams per router CPU-second; the generator's CPU time; the whole machine's"
    echo "busy share; datagrams lost before the router read them / after it sent them;"
    echo "datagrams that failed verification (misrouted, bad envelope, mangled)."
    echo
    echo "| case | sent | forwarded | loss % | datagrams/s | Mbit/s | router CPU s | router CPU % | datagrams/s per core | generator CPU s | machine busy % | lost before / after router | failed checks |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    cat "$FWD_ROWS"
    echo
    echo "#### Added latency: QoS 1, 1 publisher at $LAT_RATE msgs/s for $LAT_SECS s → 1 subscriber, MQTT over QUIC"
    echo
    echo "Columns: messages published (QoS 1 acknowledged); delivered/expected at"
    echo "the subscriber; end-to-end latency (publish to delivery, both clients on the"
    echo "same path) and PUBACK latency at the publisher, in ms; errors of both sides;"
    echo "datagrams the router forwarded to the node plus those it returned to the"
    echo "clients, and its CPU time, over the whole run (start-up and idle included)."
    echo
    echo "| round | path | published | delivered | e2e p50 ms | e2e p99 ms | PUBACK p50 ms | PUBACK p99 ms | errors | router datagrams | router CPU s |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    cat "$LAT_ROWS"
    echo
    echo "Mean over the $LAT_ROUNDS rounds:"
    echo
    echo "| latency, ms | direct | through the router | added by the router |"
    echo "|---|---:|---:|---:|"
    jq -rs '
        def mean(xs): (xs | map(select(. != null))) as $v | if ($v | length) == 0 then null else ($v | add / length) end;
        def g(x): if x == null then "—" else (x * 1000 | round / 1000 | tostring) end;
        . as $all
        | [["e2e p50", "e2e_p50"], ["e2e p99", "e2e_p99"], ["PUBACK p50", "ack_p50"], ["PUBACK p99", "ack_p99"]][]
        | . as [$name, $k]
        | mean([$all[] | select(.path == "direct") | .[$k]]) as $d
        | mean([$all[] | select(.path == "router") | .[$k]]) as $r
        | "| \($name) | \(g($d)) | \(g($r)) | \(if $d == null or $r == null then "—" else (if $r >= $d then "+" else "" end) + g($r - $d) end) |"' "$LAT_JSON"
}
report | tee ${OUT_FILE:+"$OUT_FILE"}
finish_checks "every run passed its checks"
