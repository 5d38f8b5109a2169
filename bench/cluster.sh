#!/usr/bin/env bash
# Benchmark a 3-node quicmq cluster (release processes on this machine) with
# `quicmq bench`, and print the results as markdown tables.
#
#   bash bench/cluster.sh                 # tables on stdout, progress on stderr
#   bash bench/cluster.sh -o results.md   # tables also written to results.md
#
# What it does:
#   1. builds the release binaries once (flock /tmp/quicmq-cargo.lock cargo
#      build --release -p quicmq-node) and copies them into a temp dir, so a
#      rebuild meanwhile changes nothing (BIN_DIR=DIR takes quicmq and
#      quicmq-node from DIR instead);
#   2. starts ONE cluster of 3 quicmq-node processes on free 127.0.0.1 ports
#      (node 1 bootstraps and generates the certificate nodes 2 and 3 reuse,
#      and the cluster CA they issue their gRPC certificates from; 2 and 3
#      join through node 1, one after the other; TCP, QUIC and admin
#      listeners, anonymous clients allowed, --log warn), used by every
#      measurement below;
#   3. delivery, same node vs cross node: for TCP and QUIC, ROUNDS times,
#      `quicmq bench sub` on node 1 (same node) or node 2 (cross node), then
#      -- once node 1's route table (`/api/cluster/status` on node 1) lists
#      the subscriber's node for the filter -- `quicmq bench pub` on node 1:
#      QoS 1 throughput 1 -> 1 (to a clean and to a persistent session,
#      whose messages go through the durable queue), QoS 1 fan-out 1 ->
#      FANOUT_SUBS, and the
#      end-to-end latency at LAT_RATE msgs/s for LAT_SECS s; every run has its
#      own topic prefix, so routes of earlier runs never match;
#   4. retained messages through Raft: `quicmq bench pub --retain` QoS 1 to
#      one topic per message (`%n`), from one client on the leader, one on a
#      follower, one client per node in parallel, and one client on the
#      leader with a single publish in flight (the commit latency); then
#      checks every node holds every retained message;
#   5. leader re-election: ELECTIONS times, finds the leader, `kill -9`s it,
#      polls both survivors' `/api/cluster/status` every 20 ms until one, then
#      both, report a different leader; restarts the killed node from its data
#      dir on the same ports and waits until it follows the leader and has
#      caught up.
# Every process it starts is killed on exit (trap EXIT); every load is
# bounded by a count and a time limit; all traffic goes to 127.0.0.1.
# It exits 1 (after the tables) when any run had errors, delivered less
# than it should, or left a node without every retained message.
#
# Sizes can be changed through the environment (defaults in brackets):
#   TRANSPORTS ["tcp quic"]  ROUNDS [2]
#   THR_N [50000]                          (1 -> 1 throughput, clean and durable)
#   FANOUT_SUBS [20]  FANOUT_N [5000]      (fan-out, messages published)
#   LAT_RATE [1000]  LAT_SECS [10]         (latency run)
#   RETAIN_N [3000]  RETAIN_SERIAL_N [300] (retained publishes per client)
#   ELECTIONS [5]  PAYLOAD [64]  RECEIVE_MAXIMUM [1024]
#   CLUSTER_PLAINTEXT [0]  (1: gRPC between the nodes without TLS, to
#                           measure what cluster mTLS costs)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

OUT_FILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o) OUT_FILE=$2; shift 2 ;;
        -h|--help) sed -n '2,44p' "$0"; exit 0 ;;
        *) echo "usage: bash bench/cluster.sh [-o FILE]" >&2; exit 2 ;;
    esac
done

TRANSPORTS=${TRANSPORTS:-tcp quic}
ROUNDS=${ROUNDS:-2}
THR_N=${THR_N:-50000}
FANOUT_SUBS=${FANOUT_SUBS:-20}
FANOUT_N=${FANOUT_N:-5000}
LAT_RATE=${LAT_RATE:-1000}
LAT_SECS=${LAT_SECS:-10}
RETAIN_N=${RETAIN_N:-3000}
RETAIN_SERIAL_N=${RETAIN_SERIAL_N:-300}
ELECTIONS=${ELECTIONS:-5}
PAYLOAD=${PAYLOAD:-64}
RECEIVE_MAXIMUM=${RECEIVE_MAXIMUM:-1024}
# Hard limits (seconds).
PUB_CAP=30
SUB_CAP=$((LAT_SECS + 60))
RETAIN_CAP=60
IDLE=3
ELECTION_CAP=15
REJOIN_CAP=30
POLL=0.02


# ---------------------------------------------------------------- cleanup
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_init cluster-bench


# ---------------------------------------------------------------- tools
command -v jq >/dev/null || { log "installing jq"; apt_install jq; }
command -v flock >/dev/null || { log "installing util-linux (flock)"; apt_install util-linux; }

if [ -z "${BIN_DIR:-}" ]; then
    log "building release binaries"
    flock /tmp/quicmq-cargo.lock cargo build --release -p quicmq-node >&2
fi
bench_binaries
PUB_HELP=$("$QUICMQ" bench pub --help)
[[ $PUB_HELP == *--retain* ]] || die "this quicmq has no \`bench pub --retain\`"


# note_others CASE: remember CASE if a compiler (another job) is running
# now: its numbers are disturbed, and the report says so.
DISTURBED=""
note_others() {
    if pgrep -x rustc >/dev/null || pgrep -x rust-lld >/dev/null || pgrep -x cc1 >/dev/null; then
        log "warning: another job is compiling during \"$1\": its numbers are disturbed"
        case "$DISTURBED" in *"\"$1\""*) ;; *) DISTURBED="$DISTURBED \"$1\"" ;; esac
    fi
}

# ---------------------------------------------------------------- cluster
declare -a TCP QUIC GRPC ADMIN NODE_PID
for n in 1 2 3; do
    free_port; TCP[n]=$PORT
    free_port; QUIC[n]=$PORT
    free_port; GRPC[n]=$PORT
    free_port; ADMIN[n]=$PORT
done
CERT=$WORK/cert.pem
KEY=$WORK/key.pem

# start_node N: start (or restart, from its data dir, on the same ports)
# node N. Node 1 bootstraps (and generates the cluster CA in its data dir);
# 2 and 3 join through node 1, use node 1's certificate and issue their
# cluster certificates from node 1's CA (a restarted node resumes from its
# data dir; --join is then ignored).
start_node() {
    local n=$1 extra=() _
    if [ "${CLUSTER_PLAINTEXT:-0}" = 1 ]; then
        extra=(--cluster-plaintext true)
    elif [ "$n" != 1 ]; then
        extra=(--cluster-ca "$WORK/n1/cluster-ca/ca.pem" --cluster-ca-key "$WORK/n1/cluster-ca/ca-key.pem")
    fi
    if [ "$n" != 1 ]; then
        extra+=(--join "127.0.0.1:${GRPC[1]}" --cert "$CERT" --key "$KEY")
    fi
    (
        exec "$NODE" --data-dir "$WORK/n$n" --node-id "$n" \
            --grpc-addr "127.0.0.1:${GRPC[n]}" "${extra[@]}" \
            --tcp-addr "127.0.0.1:${TCP[n]}" --quic-addr "127.0.0.1:${QUIC[n]}" \
            --routed-addr off --tls-addr off --admin-addr "127.0.0.1:${ADMIN[n]}" \
            --allow-anonymous true --log warn
    ) >>"$WORK/n$n.log" 2>&1 &
    NODE_PID[n]=$!
    PIDS+=("${NODE_PID[n]}")
    for _ in 1 2 3; do
        wait_tcp "${TCP[n]}" "${NODE_PID[n]}" && return 0
        kill -0 "${NODE_PID[n]}" 2>/dev/null || break
    done
    die "node $n did not start: $(tail -5 "$WORK/n$n.log")"
}

# status N: sets HTTP_BODY to node N's /api/cluster/status (fails if it
# does not answer).
status() { http_get "${ADMIN[$1]}" /api/cluster/status; }

# json_int FIELD: the integer FIELD of HTTP_BODY, or "" (no process).
json_int() {
    if [[ $HTTP_BODY =~ \"$1\":([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo ""; fi
}

# leader_of N: sets LEADER to the leader node N reports (0: none; "": no
# answer), TERM_OF to its term.
leader_of() {
    LEADER="" TERM_OF=""
    status "$1" || return 0
    [[ $HTTP_BODY =~ \"leader_node_id\":([0-9]+) ]] && LEADER=${BASH_REMATCH[1]}
    [[ $HTTP_BODY =~ \"term\":([0-9]+) ]] && TERM_OF=${BASH_REMATCH[1]}
    return 0
}

# wait_stable SECS: until every node reports the same leader, every node
# is an active voter in its view, and every node's applied index is at
# least the leader's. Sets LEADER.
wait_stable() {
    local _ n l agreed target
    for _ in $(seq $(($1 * 10))); do
        agreed=""
        for n in 1 2 3; do
            leader_of "$n"
            l=$LEADER
            if [ -z "$l" ] || [ "$l" = 0 ]; then agreed=""; break; fi
            if [ -z "$agreed" ]; then agreed=$l; elif [ "$agreed" != "$l" ]; then agreed=""; break; fi
        done
        if [ -n "$agreed" ] && status "$agreed" &&
            [ "$(jq '[.members[] | select(.state == "alive" and .role == "voter")] | length' <<<"$HTTP_BODY")" = 3 ]; then
            target=$(json_int applied_index)
            local behind=false
            for n in 1 2 3; do
                status "$n" || { behind=true; break; }
                [ "$(json_int applied_index)" -ge "$target" ] || { behind=true; break; }
            done
            if ! $behind; then
                LEADER=$agreed
                return 0
            fi
        fi
        sleep 0.1
    done
    return 1
}

log "starting a 3-node cluster"
start_node 1
for _ in $(seq 100); do
    [ -s "$WORK/n1/dev-key.pem" ] && break
    sleep 0.05
done
[ -s "$WORK/n1/dev-cert.pem" ] || die "node 1 did not generate a certificate: $(tail -5 "$WORK/n1.log")"
cp "$WORK/n1/dev-cert.pem" "$CERT"
cp "$WORK/n1/dev-key.pem" "$KEY"
for _ in $(seq 100); do
    leader_of 1
    [ "$LEADER" = 1 ] && break
    sleep 0.1
done
[ "$LEADER" = 1 ] || die "node 1 did not become the leader of its one-node cluster"
start_node 2
start_node 3
wait_stable 30 || die "the 3 nodes did not form a cluster: $(status 1 && echo "$HTTP_BODY")"
log "cluster formed; leader: node $LEADER"

# client_args TRANSPORT N: the flags that connect a bench client to node N.
client_args() {
    case "$1" in
        tcp) echo "--transport tcp -p ${TCP[$2]}" ;;
        quic) echo "--transport quic -p ${QUIC[$2]} --cafile $CERT --server-name localhost" ;;
        *) die "unknown transport $1" ;;
    esac
}

# wait_route FILTER N SECS: until node 1's route table lists node N for FILTER.
wait_route() {
    local _
    for _ in $(seq $(($3 * 20))); do
        if status 1 && jq -e --arg f "$1" --argjson n "$2" \
            'any(.routes[]; .filter == $f and any(.node_ids[]; . == $n))' >/dev/null <<<"$HTTP_BODY"; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# node_cpu: clock ticks used so far by nodes 1, 2, 3 ("T1 T2 T3").
node_cpu() { echo "$(cpu_ticks "${NODE_PID[1]}") $(cpu_ticks "${NODE_PID[2]}") $(cpu_ticks "${NODE_PID[3]}")"; }
HZ=$(getconf CLK_TCK)

# last_json FILE: the last line of FILE if it is JSON, else {}.
last_json() {
    local line
    line=$(tail -1 "$1" 2>/dev/null || true)
    if [ -n "$line" ] && jq -e . >/dev/null 2>&1 <<<"$line"; then echo "$line"; else echo '{}'; fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)

# ---------------------------------------------------------------- delivery
DELIVERY=$WORK/delivery.jsonl
: >"$DELIVERY"
RUN=0

# run_delivery ROUND CASE TRANSPORT PLACEMENT "SUB FLAGS" "PUB FLAGS"
# PLACEMENT: same (subscriber on node 1) | cross (subscriber on node 2);
# the publisher is on node 1.
run_delivery() {
    local round=$1 case=$2 transport=$3 placement=$4 sub_flags=$5 pub_flags=$6
    local sub_node=1 dir filter sub_pid sub pub cpu0 cpu1 label
    [ "$placement" = cross ] && sub_node=2
    RUN=$((RUN + 1))
    dir=$WORK/run$RUN
    mkdir -p "$dir"
    filter="c$RUN/#"
    label="$case / $transport / $placement (round $round)"
    log "delivery: $label"
    note_others "delivery $case/$transport"
    cpu0=$(node_cpu)
    # shellcheck disable=SC2046,SC2086
    timeout $((SUB_CAP + 30)) "$QUICMQ" bench sub $(client_args "$transport" "$sub_node") $sub_flags \
        -t "$filter" --idle "$IDLE" -d "$SUB_CAP" --receive-maximum "$RECEIVE_MAXIMUM" --json \
        >"$dir/sub.json" 2>"$dir/sub.err" &
    sub_pid=$!
    PIDS+=("$sub_pid")
    if ! wait_line "$dir/sub.err" "subscribers ready" "$sub_pid" 60; then
        log "$label: subscribers not ready: $(tail -3 "$dir/sub.err")"
    elif ! wait_route "$filter" "$sub_node" 10; then
        log "$label: node 1 never listed node $sub_node for $filter"
    fi
    # shellcheck disable=SC2046,SC2086
    timeout $((PUB_CAP + 60)) "$QUICMQ" bench pub $(client_args "$transport" 1) $pub_flags \
        -t "c$RUN/%i" -s "$PAYLOAD" --json >"$dir/pub.json" 2>"$dir/pub.err" || true
    wait "$sub_pid" 2>/dev/null || true
    forget_pid "$sub_pid"
    cpu1=$(node_cpu)
    note_others "delivery $case/$transport"
    sub=$(last_json "$dir/sub.json")
    pub=$(last_json "$dir/pub.json")
    [ "$sub" = '{}' ] && log "$label: no subscriber summary: $(tail -3 "$dir/sub.err")"
    [ "$pub" = '{}' ] && log "$label: no publisher summary: $(tail -3 "$dir/pub.err")"
    jq -cn --argjson s "$sub" --argjson p "$pub" --arg case "$case" --arg t "$transport" \
        --arg pl "$placement" --argjson r "$round" --arg c0 "$cpu0" --arg c1 "$cpu1" --argjson hz "$HZ" '
        ($c0 | split(" ") | map(tonumber)) as $a | ($c1 | split(" ") | map(tonumber)) as $b
        | {round: $r, case: $case, transport: $t, placement: $pl, sub: $s, pub: $p,
           cpu: [range(0; 3) | ($b[.] - $a[.]) / $hz]}' >>"$DELIVERY"
    log "$label: delivered $(jq -r '.messages // "—"' <<<"$sub")/$(jq -r '.expected // "—"' <<<"$sub") at $(jq -r '.rate // "—"' <<<"$sub") msgs/s, p50 $(jq -r '.p50_ms // "—"' <<<"$sub") ms, p99 $(jq -r '.p99_ms // "—"' <<<"$sub") ms"
    check_delivered "$label" "$sub" "$pub"
}

declare -a CASES=(
    "thr|-c 1 -q 1 -n $THR_N|-c 1 -q 1 -n $THR_N -d $PUB_CAP"
    "durable|-c 1 -q 1 -n $THR_N --session-expiry 300|-c 1 -q 1 -n $THR_N -d $PUB_CAP"
    "fanout|-c $FANOUT_SUBS -q 1 -n $FANOUT_N|-c 1 -q 1 -n $FANOUT_N -d $PUB_CAP"
    "latency|-c 1 -q 1 -n $((LAT_RATE * LAT_SECS))|-c 1 -q 1 -r $LAT_RATE -d $LAT_SECS"
)
for round in $(seq "$ROUNDS"); do
    # Alternate which placement goes first, so drift over the run does not
    # favour one of them.
    if [ $((round % 2)) = 1 ]; then placements="same cross"; else placements="cross same"; fi
    for transport in $TRANSPORTS; do
        for c in "${CASES[@]}"; do
            IFS='|' read -r case sub_flags pub_flags <<<"$c"
            for placement in $placements; do
                run_delivery "$round" "$case" "$transport" "$placement" "$sub_flags" "$pub_flags"
            done
        done
    done
done

# ---------------------------------------------------------------- retained
RETAINED=$WORK/retained.jsonl
: >"$RETAINED"
RETAINED_TOTAL=0

# run_retained NAME COUNT INFLIGHT NODE...: one `bench pub --retain`
# client per NODE, all at once, COUNT QoS 1 publishes each, each to its own
# topic; INFLIGHT publishes in flight per client ("" = the server's
# Receive Maximum).
run_retained() {
    local name=$1 count=$2 inflight=$3 dir n pids=() t0 t1 i=0 _
    shift 3
    RUN=$((RUN + 1))
    dir=$WORK/run$RUN
    mkdir -p "$dir"
    wait_stable 30 || log "retained: $name: the cluster is not stable"
    local leader=$LEADER
    log "retained: $name (leader: node $leader)"
    note_others "retained: $name"
    local cpu0 cpu1
    cpu0=$(node_cpu)
    now_us; t0=$NOW_US
    for n in "$@"; do
        i=$((i + 1))
        # shellcheck disable=SC2046
        timeout $((RETAIN_CAP + 30)) "$QUICMQ" bench pub $(client_args tcp "$n") -c 1 -q 1 \
            -n "$count" -d "$RETAIN_CAP" ${inflight:+--inflight "$inflight"} --retain \
            -t "r$RUN/n$n-$i/%n" -s "$PAYLOAD" --json >"$dir/pub$i.json" 2>"$dir/pub$i.err" &
        pids+=($!)
        PIDS+=($!)
    done
    for n in "${pids[@]}"; do
        wait "$n" 2>/dev/null || true
        forget_pid "$n"
    done
    now_us; t1=$NOW_US
    cpu1=$(node_cpu)
    note_others "retained: $name"
    # Every node applies the committed messages (not all of them may have
    # been acknowledged yet on a follower when the publishers finish).
    local expect=$((RETAINED_TOTAL + count * $#)) after=() all=false
    for _ in $(seq 100); do
        all=true
        for n in 1 2 3; do
            status "$n" && after[n]=$(json_int retained_messages) || after[n]=""
            [ "${after[n]:-0}" -ge "$expect" ] || all=false
        done
        $all && break
        sleep 0.1
    done
    RETAINED_TOTAL=$expect
    local pubs=() f
    for f in "$dir"/pub*.json; do pubs+=("$(last_json "$f")"); done
    jq -cn --arg name "$name" --arg leader "$leader" --arg nodes "$*" \
        --argjson wall "$(((t1 - t0) / 1000))" --argjson expect "$expect" \
        --arg after "${after[1]:-?} / ${after[2]:-?} / ${after[3]:-?}" \
        --arg c0 "$cpu0" --arg c1 "$cpu1" --argjson hz "$HZ" \
        --argjson pubs "$(printf '%s\n' "${pubs[@]}" | jq -s .)" '
        ($c0 | split(" ") | map(tonumber)) as $a | ($c1 | split(" ") | map(tonumber)) as $b
        | {name: $name, leader: $leader, nodes: $nodes, wall_ms: $wall, expect: $expect,
           after: $after, pubs: $pubs, cpu: [range(0; 3) | ($b[.] - $a[.]) / $hz]}' >>"$RETAINED"
    log "retained: $name: $(jq -r '[.pubs[].messages // 0] | add' <<<"$(tail -1 "$RETAINED")") acknowledged, retained on the nodes: ${after[1]:-?} / ${after[2]:-?} / ${after[3]:-?} (expected $expect)"
    local node_count
    for node_count in "${after[1]:-?}" "${after[2]:-?}" "${after[3]:-?}"; do
        [ "$node_count" = "$expect" ] || FAILURES+=("retained: $name: a node holds $node_count of $expect")
    done
    for f in "$dir"/pub*.json; do
        if [ "$(jq -r '.errors // 0' <<<"$(last_json "$f")")" != 0 ]; then
            FAILURES+=("retained: $name: errors")
            log "  errors: $(jq -r '.first_error // "-"' <<<"$(last_json "$f")")"
        fi
    done
}

wait_stable 30 || die "the cluster is not stable before the retained runs"
L=$LEADER
F=$((L % 3 + 1))
run_retained "1 client on the leader (node $L)" "$RETAIN_N" "" "$L"
run_retained "1 client on a follower (node $F)" "$RETAIN_N" "" "$F"
run_retained "3 clients, one per node, in parallel" "$RETAIN_N" "" 1 2 3
run_retained "1 client on the leader (node $L), 1 publish in flight" "$RETAIN_SERIAL_N" 1 "$L"

# ---------------------------------------------------------------- elections
ELECTION_ROWS=$WORK/elections.jsonl
: >"$ELECTION_ROWS"

# run_election ROUND: kill -9 the leader, time the survivors' new leader,
# restart the killed node and time its return.
run_election() {
    local round=$1 old term0 t0 first="" both="" new="" term1="" la lb
    wait_stable 30 || die "election $round: the cluster is not stable"
    old=$LEADER
    leader_of "$old"
    term0=$TERM_OF
    local s1=$((old % 3 + 1)) s2=$(((old + 1) % 3 + 1))
    log "election $round: kill -9 node $old (leader, term $term0)"
    note_others "elections"
    now_us; t0=$NOW_US
    kill -9 "${NODE_PID[old]}"
    while :; do
        leader_of "$s1"; la=$LEADER
        leader_of "$s2"; lb=$LEADER
        now_us
        if [ -z "$first" ]; then
            if [ -n "$la" ] && [ "$la" != 0 ] && [ "$la" != "$old" ]; then
                first=$(((NOW_US - t0) / 1000)); new=$la
            elif [ -n "$lb" ] && [ "$lb" != 0 ] && [ "$lb" != "$old" ]; then
                first=$(((NOW_US - t0) / 1000)); new=$lb
            fi
        fi
        if [ -n "$first" ] && [ "$la" = "$lb" ] && [ "$la" != 0 ] && [ "$la" != "$old" ]; then
            both=$(((NOW_US - t0) / 1000)); new=$la
            leader_of "$new"; term1=$TERM_OF
            break
        fi
        [ $(((NOW_US - t0) / 1000000)) -ge "$ELECTION_CAP" ] && break
        sleep "$POLL"
    done
    wait "${NODE_PID[old]}" 2>/dev/null || true
    forget_pid "${NODE_PID[old]}"
    log "election $round: new leader ${new:-none} after ${first:-—} ms (both survivors: ${both:-—} ms)"
    # Restart the killed node and wait until it follows the leader and has
    # caught up (applied index at least the leader's).
    local r0 back="" target=""
    now_us; r0=$NOW_US
    start_node "$old"
    while :; do
        leader_of "$old"
        if [ -n "$LEADER" ] && [ "$LEADER" != 0 ]; then
            local follower_applied
            follower_applied=$(json_int applied_index)
            if status "$LEADER"; then
                target=$(json_int applied_index)
                if [ -n "$follower_applied" ] && [ -n "$target" ] && [ "$follower_applied" -ge "$target" ]; then
                    now_us
                    back=$(((NOW_US - r0) / 1000))
                    break
                fi
            fi
        fi
        now_us
        [ $(((NOW_US - r0) / 1000000)) -ge "$REJOIN_CAP" ] && break
        sleep 0.05
    done
    note_others "elections"
    log "election $round: node $old back in the cluster after ${back:-—} ms (from its restart)"
    jq -cn --argjson round "$round" --argjson old "$old" --arg new "${new:-}" \
        --arg term0 "$term0" --arg term1 "${term1:-}" --arg first "${first:-}" \
        --arg both "${both:-}" --arg back "${back:-}" '
        def num(x): if x == "" then null else (x | tonumber) end;
        {round: $round, killed: $old, new: num($new), term0: num($term0), term1: num($term1),
         first_ms: num($first), both_ms: num($both), back_ms: num($back)}' >>"$ELECTION_ROWS"
}

for round in $(seq "$ELECTIONS"); do
    run_election "$round"
done
FINISHED=$(date +%s)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain -- node raft proto Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    COMMIT="$COMMIT (with uncommitted changes)"
fi
case_title() {
    case "$1" in
        thr) echo "QoS 1 throughput, 1 publisher → 1 subscriber ($THR_N msgs)" ;;
        durable) echo "QoS 1 throughput to a persistent session (durable queue through Raft), 1 publisher → 1 subscriber ($THR_N msgs)" ;;
        fanout) echo "QoS 1 fan-out, 1 publisher → $FANOUT_SUBS subscribers ($FANOUT_N msgs)" ;;
        latency) echo "QoS 1 latency, 1 publisher at $LAT_RATE msgs/s for $LAT_SECS s → 1 subscriber" ;;
    esac
}
report() {
    echo "### Cluster results"
    echo
    echo "- command: \`bash bench/cluster.sh\`"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr); the 3 nodes and every client on this one machine, all traffic over loopback"
    echo "- quicmq: commit $COMMIT, release build"
    echo "- payload $PAYLOAD bytes; MQTT 5.0; subscribers announce Receive Maximum $RECEIVE_MAXIMUM; nodes with --log warn and default settings (3 voters)"
    echo "- load runs: $((FINISHED - STARTED)) s; load average (1/5/15 min) before $LOAD_BEFORE, after $LOAD_AFTER"
    if [ -n "$DISTURBED" ]; then
        echo "- **disturbed**: another job was compiling during$DISTURBED; rerun on a quiet machine"
    else
        echo "- no compiler (another job) was running at the start or end of any case"
    fi
    echo
    echo "#### Delivery: same node vs cross node"
    echo
    echo "The publisher is on node 1; the subscriber(s) on node 1 (same) or node 2"
    echo "(cross: node 1 forwards over its gRPC stream to node 2, which delivers)."
    echo "Columns: delivered/expected and msgs/s at the subscriber(s) (first to last"
    echo "message, all subscribers together); end-to-end latency p50/p99 in ms;"
    echo "messages acknowledged to the publisher and their rate; errors of both"
    echo "sides; CPU seconds each node used during the run."
    local c
    for c in thr durable fanout latency; do
        echo
        echo "##### $(case_title "$c")"
        echo
        echo "| transport | placement | round | delivered | msgs/s | p50 ms | p99 ms | published | pub msgs/s | errors | CPU s n1 / n2 / n3 |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        jq -r --arg c "$c" '
            def n(x): if x == null then "—" else x end;
            def f(x): if x == null then "—" else (x * 10 | round / 10 | tostring) end;
            def g(x): if x == null then "—" else (x * 1000 | round / 1000 | tostring) end;
            select(.case == $c)
            | "| \(.transport) | \(.placement) | \(.round) | \(n(.sub.messages))/\(n(.sub.expected)) | \(f(.sub.rate)) | \(g(.sub.p50_ms)) | \(g(.sub.p99_ms)) | \(n(.pub.messages)) | \(f(.pub.rate)) | \((.sub.errors // 0) + (.pub.errors // 0)) | \(.cpu | map(. * 100 | round / 100 | tostring) | join(" / ")) |"' \
            "$DELIVERY"
    done
    echo
    echo "##### Side by side (mean over the $ROUNDS rounds)"
    echo
    echo "| transport | case | same-node msgs/s | cross-node msgs/s | cross / same | same p50 / p99 ms | cross p50 / p99 ms |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    jq -rs '
        def mean(xs): (xs | map(select(. != null))) as $v | if ($v | length) == 0 then null else ($v | add / length) end;
        def f(x): if x == null then "—" else (x | round | tostring) end;
        def g(x): if x == null then "—" else (x * 1000 | round / 1000 | tostring) end;
        . as $all
        | ($all | map(.transport) | unique) as $ts
        | ["thr", "durable", "fanout", "latency"][] as $c
        | $ts[] as $t
        | [$all[] | select(.case == $c and .transport == $t)] as $rows
        | select($rows | length > 0)
        | ($rows | map(select(.placement == "same"))) as $s
        | ($rows | map(select(.placement == "cross"))) as $x
        | mean($s | map(.sub.rate)) as $sr | mean($x | map(.sub.rate)) as $xr
        | "| \($t) | \({thr: "1 → 1 throughput", durable: "1 → 1 throughput, durable", fanout: "fan-out 1 → N", latency: "latency at fixed rate"} | .[$c]) | \(f($sr)) | \(f($xr)) | \(if $sr == null or $xr == null or $sr == 0 then "—" else ($xr / $sr * 100 | round / 100 | tostring) end) | \(g(mean($s | map(.sub.p50_ms)))) / \(g(mean($s | map(.sub.p99_ms)))) | \(g(mean($x | map(.sub.p50_ms)))) / \(g(mean($x | map(.sub.p99_ms)))) |"' \
        "$DELIVERY"
    echo
    echo "#### Retained messages through Raft"
    echo
    echo "\`quicmq bench pub --retain -q 1 -t PREFIX/%n\` over TCP: every publish"
    echo "retains a message on its own topic, committed through Raft before its"
    echo "PUBACK. Columns: publishes acknowledged (all clients); retained msgs/s ="
    echo "acknowledged / wall time from starting the client processes to the last"
    echo "one's exit (connects included); the clients' own rate (first publish to"
    echo "last PUBACK, summed over clients); PUBACK latency p50/p99 (the worst"
    echo "client's); errors; retained messages each node holds afterwards"
    echo "(cumulative over the runs) and the expected total; CPU seconds per node."
    echo
    echo "| case | acknowledged | msgs/s (wall) | msgs/s (clients) | PUBACK p50 ms | PUBACK p99 ms | errors | retained on n1 / n2 / n3 (expected) | CPU s n1 / n2 / n3 |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    jq -r '
        def f(x): if x == null then "—" else (x * 10 | round / 10 | tostring) end;
        def g(x): if x == null then "—" else (x * 100 | round / 100 | tostring) end;
        ([.pubs[].messages // 0] | add) as $acked
        | "| \(.name) | \($acked) | \(if .wall_ms > 0 then f($acked / .wall_ms * 1000) else "—" end) | \(f([.pubs[].rate // 0] | add)) | \(g([.pubs[].p50_ms // null] | max)) | \(g([.pubs[].p99_ms // null] | max)) | \([.pubs[].errors // 0] | add) | \(.after) (\(.expect)) | \(.cpu | map(. * 100 | round / 100 | tostring) | join(" / ")) |"' \
        "$RETAINED"
    echo
    echo "#### Leader re-election after kill -9"
    echo
    echo "Each round: the leader is found from the nodes' status, killed with"
    echo "\`kill -9\`, and both survivors' \`/api/cluster/status\` are polled every"
    echo "20 ms (one request each per poll, no process started). \"first\" = until"
    echo "one survivor reports a leader other than the killed node; \"both\" = until"
    echo "both report the same new leader. Then the killed node is restarted from its"
    echo "data dir on the same ports; \"back\" = from its restart until it reports"
    echo "the leader and its applied index has reached the leader's."
    echo
    echo "| round | killed leader | new leader | term before → after | first ms | both ms | back ms |"
    echo "|---:|---:|---:|---|---:|---:|---:|"
    jq -r '
        def n(x): if x == null then "—" else (x | tostring) end;
        "| \(.round) | node \(.killed) | \(if .new == null then "—" else "node \(.new)" end) | \(n(.term0)) → \(n(.term1)) | \(n(.first_ms)) | \(n(.both_ms)) | \(n(.back_ms)) |"' \
        "$ELECTION_ROWS"
    jq -rs '
        def median(xs): (xs | map(select(. != null)) | sort) as $v | ($v | length) as $k
            | if $k == 0 then "—" elif $k % 2 == 1 then ($v[($k - 1) / 2] | tostring)
              else (($v[$k / 2 - 1] + $v[$k / 2]) / 2 | tostring) end;
        "| **median** | | | | **\(median(map(.first_ms)))** | **\(median(map(.both_ms)))** | **\(median(map(.back_ms)))** |"' \
        "$ELECTION_ROWS"
}
report | tee ${OUT_FILE:+"$OUT_FILE"}
finish_checks "every run delivered and retained what was sent"
