#!/usr/bin/env bash
# Chaos scenarios against the local Compose fleet (docker-compose.yml: three
# nodes behind two routers), driven from the host with Docker's own tools
# (`docker kill`, `docker network disconnect`, `docker restart`) and the
# static `quicmq` CLI the image carries.
#
#   chaos/compose.sh [SCENARIO ...]      default: roundtrip kill partition restart
#
# The script starts its own fleet (a project name of its own, free host
# ports on 127.0.0.1, fresh volumes), runs the scenarios one after the
# other against it, and always removes it again (`down -v`, also on failure
# or Ctrl-C; QUICMQ_CHAOS_KEEP=1 leaves it running). The image must exist
# (.ci/build-image; .ci/compose-check builds it and runs `roundtrip kill`).
#
# Scenarios and the invariants each asserts:
#
#   roundtrip  A QUIC subscriber through the routers gets a message published
#              over QUIC through the routers and one published over TCP to
#              node1 (certificate verified: node1's development certificate,
#              which every node serves).
#   kill       A persistent QoS 1 subscriber (clean start 0) through the
#              routers; QoS 1 messages published one by one through the
#              routers; after a third of them the Raft leader (or, when the
#              subscriber sits on the leader, another node) is killed with
#              SIGKILL, and publishing goes on. Asserts: every acknowledged
#              message reaches the subscriber, the survivors have a leader
#              other than the dead node, the retained messages on both
#              survivors are exactly the acknowledged ones (also one retained
#              while the node was dead), and after `docker start` the node
#              rejoins and holds the same retained set.
#   partition  `docker network disconnect` of the leader (or another node not
#              holding the subscriber): the majority elects a new leader and
#              keeps taking QoS 1 messages (all acknowledged ones reach the
#              subscriber) and a retained message; the cut-off node refuses a
#              retained PUBLISH (it cannot commit). Meanwhile another
#              container takes its IP, so after `docker network connect`
#              (same DNS alias) the node is back under its name at a new
#              address, as a rescheduled pod would be: peers and routers must
#              follow the name (the routers see three live nodes again). The
#              node catches up: same retained set everywhere (without the
#              refused one), and a subscriber on it receives a message
#              published through the routers.
#   restart    Rolling restart (`docker restart`, SIGTERM then start) in the
#              documented order: learners, followers, the leader last. After
#              each: the node is healthy, three members active, a leader, both
#              routers ready, a retained message and a QoS 1 publish through
#              the routers acknowledged. At the end: the same retained set on
#              every node, and a round trip through the routers.
#
# After every scenario the fleet must be whole again (three active members,
# a leader, every node healthy, both routers ready and seeing three live
# nodes) before the next starts: that is the recovery check.
#
# Not covered here: killing the node that holds the subscriber's session
# (session failover), and a kill at an arbitrary instant of a publish
# stream. The kill and the partition fall between two publishes, once the
# subscriber has every earlier message.
#
# Prints one line per scenario and `compose: N passed, M failed`; exits 1 if
# any failed. Exits 0 with "SKIP" where Docker or Compose is missing. Every
# wait is bounded.
#
# Environment: QUICMQ_IMAGE (default quicmq:dev), QUICMQ_CLI (the quicmq CLI
# on the host; default the image's staged copy under target/image, else
# target/release or target/debug), QUICMQ_CHAOS_MESSAGES (QoS 1 messages per
# scenario, default 30), QUICMQ_CHAOS_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { echo "compose: $*" >&2; }
skip() {
    echo "compose: SKIP: $*"
    exit 0
}

command -v docker >/dev/null || skip "no docker command"
timeout 30 docker info >/dev/null 2>&1 || skip "the Docker daemon does not answer"
if command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
elif timeout 30 docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    skip "neither docker-compose nor 'docker compose' is installed"
fi
command -v python3 >/dev/null || { say "python3 is needed (JSON, free ports)"; exit 1; }

scenarios=("$@")
[ "${#scenarios[@]}" -gt 0 ] || scenarios=(roundtrip kill partition restart)
for s in "${scenarios[@]}"; do
    case "$s" in
        roundtrip | kill | partition | restart) ;;
        *) say "unknown scenario $s (roundtrip, kill, partition, restart)"; exit 2 ;;
    esac
done

export QUICMQ_IMAGE="${QUICMQ_IMAGE:-quicmq:dev}"
docker image inspect "$QUICMQ_IMAGE" >/dev/null 2>&1 \
    || { say "no image $QUICMQ_IMAGE: build it with .ci/build-image"; exit 1; }
cli="${QUICMQ_CLI:-}"
if [ -z "$cli" ]; then
    for c in target/image/rootfs/usr/local/bin/quicmq target/release/quicmq target/debug/quicmq; do
        [ -x "$root/$c" ] && { cli="$root/$c"; break; }
    done
fi
[ -n "$cli" ] && [ -x "$cli" ] || { say "no quicmq CLI (QUICMQ_CLI, or run .ci/build-image)"; exit 1; }
n_msgs="${QUICMQ_CHAOS_MESSAGES:-30}"

project="quicmqchaos$$"
work=$(mktemp -d /tmp/quicmq-chaos.XXXXXX)
compose() { timeout 300 "${compose_cmd[@]}" -p "$project" -f "$root/docker-compose.yml" "$@"; }
cleanup() {
    local status=$?
    if [ "$status" != 0 ]; then
        say "container logs (last lines):"
        compose logs --no-color --tail=60 >&2 2>&1 || true
    fi
    if [ "${QUICMQ_CHAOS_KEEP:-0}" = 1 ]; then
        say "fleet left running: ${compose_cmd[*]} -p $project -f docker-compose.yml down -v"
    else
        # Containers the scenarios started beside Compose's (they hold the network).
        docker ps -aq --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.service=placeholder \
            | xargs -r docker rm -f -v >/dev/null 2>&1 || true
        compose down -v --remove-orphans >/dev/null 2>&1 || say "down failed (project $project)"
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the fleet --------------------------------------------------------------
read -r quic_port mqtt_port mqtts_port admin1 admin2 admin3 radmin1 radmin2 < <(python3 - <<'EOF'
import socket
held, ports = [], []
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); held.append(u)
ports.append(u.getsockname()[1])
for _ in range(7):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); held.append(t); ports.append(t.getsockname()[1])
print(*ports)
EOF
)
export QUICMQ_HOST_BIND=127.0.0.1 QUICMQ_HOST_QUIC_PORT=$quic_port QUICMQ_HOST_MQTT_PORT=$mqtt_port \
    QUICMQ_HOST_MQTTS_PORT=$mqtts_port QUICMQ_HOST_ADMIN1_PORT=$admin1 \
    QUICMQ_HOST_ADMIN2_PORT=$admin2 QUICMQ_HOST_ADMIN3_PORT=$admin3 \
    QUICMQ_HOST_ROUTER1_ADMIN_PORT=$radmin1 QUICMQ_HOST_ROUTER2_ADMIN_PORT=$radmin2

t0=$(date +%s)
say "up: project $project, image $QUICMQ_IMAGE, QUIC 127.0.0.1:$quic_port (routers), TCP 127.0.0.1:$mqtt_port (node1)"
compose up -d >"$work/up.out" 2>&1 || { cat "$work/up.out" >&2; exit 1; }
declare -A cid
for n in 1 2 3; do cid[$n]=$(compose ps -q "node$n"); done
net=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "${cid[1]}")

# Repeats a command until it succeeds, at most $1 seconds.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$(($(date +%s) + limit))
    until "$@"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            say "timed out after ${limit}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}
now_ms() { date +%s%3N; }

# `quicmq cluster status` of node N, run inside its container (so it works
# while the node is cut off from the network), reduced by a Python
# expression over the JSON `s`. Empty when the node does not answer.
status_of() {
    timeout 15 docker exec "${cid[$1]}" /usr/local/bin/quicmq cluster status --admin 127.0.0.1:8080 2>/dev/null \
        | python3 -c "import json,sys; s=json.load(sys.stdin); print($2)" 2>/dev/null || true
}
leader_of() { status_of "$1" "s['leader_node_id'] or 0"; }
# The retained messages node N holds under chaos/retained/, sorted: a fresh
# subscriber on the node's own TCP listener gets exactly those.
retained_of() {
    timeout 20 docker exec "${cid[$1]}" /usr/local/bin/quicmq sub -h 127.0.0.1 -p 1883 --transport tcp \
        -t 'chaos/retained/#' -W 2 2>/dev/null | sort || true
}
node_healthy() {
    timeout 15 docker exec "${cid[$1]}" /usr/local/bin/quicmq health --admin 127.0.0.1:8080 --timeout 3 >/dev/null 2>&1
}
# The routers' admin endpoints are published on the host (router2 shares
# router1's network namespace).
router_metric_sum() {
    curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null \
        | awk -v m="$2" '$1 ~ "^"m"[{ ]" || $1 == m { s += $2 } END { print s + 0 }' || echo 0
}
routers_see() {
    local want=$1 r
    for r in "$radmin1" "$radmin2"; do
        "$cli" health --admin "127.0.0.1:$r" --timeout 3 >/dev/null 2>&1 || return 1
        [ "$(router_metric_sum "$r" quicmq_router_node_alive)" = "$want" ] || return 1
    done
}

fleet_whole() {
    local n
    for n in 1 2 3; do node_healthy "$n" || return 1; done
    [ "$(status_of 1 "sum(m['state'] == 'alive' for m in s['members'])")" = 3 ] || return 1
    local l
    l=$(leader_of 1)
    [ -n "$l" ] && [ "$l" != 0 ] || return 1
    for n in 2 3; do [ "$(leader_of "$n")" = "$l" ] || return 1; done
    routers_see 3
}
describe_cluster() {
    status_of 1 "'leader node%s term %s; ' % (s['leader_node_id'], s['term']) + ', '.join('node%s %s %s %s' % (m['node_id'], m['grpc_addr'], m['role'], m['state']) for m in s['members'])"
}

wait_for 180 "the fleet: 3 active members, a leader, healthy nodes, routers seeing 3 nodes" fleet_whole
t_ready=$(date +%s)
say "ready after $((t_ready - t0))s: $(describe_cluster)"

docker cp "${cid[1]}:/var/lib/quicmq/dev-cert.pem" "$work/ca.pem" >/dev/null
quic=(-h 127.0.0.1 -p "$quic_port" --cafile "$work/ca.pem" --server-name localhost --connect-timeout 5)
got() { grep -qxF -- "$1" "$2"; }

# One QoS 1 PUBLISH through the routers (or with the given connection
# flags), retried up to 4 times: a connection steered to a node that just
# died fails until the routers notice (1 s). Returns 0 once acknowledged.
publish() {
    local topic=$1 msg=$2
    shift 2
    local attempt
    for attempt in 1 2 3 4; do
        if timeout 20 "$cli" pub "$@" -t "$topic" -m "$msg" -q 1 >>"$work/pub.out" 2>>"$work/pub.err"; then
            return 0
        fi
        echo "$topic $msg: attempt $attempt failed" >>"$work/pub.err"
        sleep 1
    done
    return 1
}
retain() {
    publish "chaos/retained/$1" "$2" "${quic[@]}" -r || return 1
    echo "chaos/retained/$1 $2" >>"$work/retained.expected"
}
retained_equal_on() {
    local n expected
    expected=$(sort -u "$work/retained.expected" 2>/dev/null || true)
    for n in "$@"; do
        [ "$(retained_of "$n")" = "$expected" ] || return 1
    done
}
show_retained() {
    local n
    say "expected retained: $(sort -u "$work/retained.expected" | tr '\n' ';')"
    for n in "$@"; do say "node$n retained: $(retained_of "$n" | tr '\n' ';')"; done
}

# A persistent QoS 1 subscriber through the routers on FILTER, output in
# $work/$2.out; echoes "PID NODE" once a probe message came through (NODE:
# the node the route table names for the filter). Tries up to 8 client IDs
# until the subscriber does not sit on a node in $3 (space-separated).
start_subscriber() {
    local base=$1 name=$2 avoid=${3:-} attempt id filter pid node
    for attempt in 1 2 3 4 5 6 7 8; do
        id="$name-$attempt"
        filter="$base/$attempt/#"
        : >"$work/$name.out"
        timeout 900 "$cli" sub "${quic[@]}" -c -i "$id" --session-expiry 900 -q 1 -t "$filter" \
            >"$work/$name.out" 2>"$work/$name.err" &
        pid=$!
        local deadline=$(($(date +%s) + 60))
        until got "$base/$attempt/probe ready" "$work/$name.out"; do
            if ! kill -0 "$pid" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
                say "subscriber $id did not come up: $(tail -n 3 "$work/$name.err" | tr '\n' ' ')"
                kill "$pid" 2>/dev/null || true
                return 1
            fi
            timeout 20 "$cli" pub "${quic[@]}" -t "$base/$attempt/probe" -m ready -q 1 >/dev/null 2>>"$work/pub.err" || true
            sleep 0.3
        done
        node=$(status_of 1 "[n for r in s['routes'] if r['filter'] == '$filter' for n in r['node_ids']][0]")
        if [ -n "$node" ] && [[ " $avoid " != *" $node "* ]]; then
            echo "$pid $node $base/$attempt"
            return 0
        fi
        kill -INT "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    say "could not place a subscriber away from node(s) $avoid"
    return 1
}

# --- scenarios ------------------------------------------------------------
bg=()
kill_bg() {
    local p
    for p in "${bg[@]}"; do kill "$p" 2>/dev/null || true; done
}

scenario_roundtrip() {
    # A file of its own per run, emptied before the subscriber starts (the
    # redirection happens in the child, possibly after the first check).
    local out="$work/rt.$RANDOM.out" pid
    : >"$out"
    timeout 150 "$cli" sub "${quic[@]}" -t check/# -q 1 -W 120 >>"$out" 2>"$work/rt.err" &
    pid=$!
    bg+=("$pid")
    # SUBACK comes once the route is committed; until the subscriber has a
    # message, publish it again (so a message may arrive twice).
    publish_until_seen() {
        local deadline=$(($(date +%s) + 60))
        until got "$1 $2" "$out"; do
            [ "$(date +%s)" -lt "$deadline" ] || { say "never received: $1 $2"; return 1; }
            kill -0 "$pid" 2>/dev/null || { say "subscriber exited: $(cat "$work/rt.err")"; return 1; }
            timeout 20 "$cli" pub "${@:3}" -t "$1" -m "$2" -q 1 >/dev/null 2>>"$work/pub.err" || true
            sleep 0.5
        done
    }
    publish_until_seen check/quic via-routers "${quic[@]}"
    publish_until_seen check/tcp to-node1 -h 127.0.0.1 -p "$mqtt_port" --transport tcp
    kill -INT "$pid" 2>/dev/null || true
    say "roundtrip: $(sort -u "$out" | tr '\n' ';')"
}

# Publishes messages $2..$3 to TOPIC $1 through the routers; appends the
# acknowledged ones to $work/acked, the others to $work/failed.
publish_range() {
    local topic=$1 i
    for i in $(seq "$2" "$3"); do
        if publish "$topic" "$i" "${quic[@]}"; then echo "$i" >>"$work/acked"; else echo "$i" >>"$work/failed"; fi
    done
}
all_acked_received() {
    local topic=$1 out=$2 m
    while read -r m; do got "$topic $m" "$out" || return 1; done <"$work/acked"
}
report_missing() {
    local topic=$1 out=$2 m missing=()
    while read -r m; do got "$topic $m" "$out" || missing+=("$m"); done <"$work/acked"
    say "acknowledged but not received: ${missing[*]:-none}"
}

# Common start of the kill and partition scenarios: empty ledgers, a
# persistent QoS 1 subscriber (under PREFIX, output in $work/NAME.out) on a
# node other than the Raft leader, and the leader as the victim. Sets
# sub_pid, sub_node, base, victim and others (the two other nodes).
pick_victim() {
    local sub n
    : >"$work/acked"
    : >"$work/failed"
    victim=$(leader_of 1)
    sub=$(start_subscriber "$1" "$2" "$victim")
    read -r sub_pid sub_node base <<<"$sub"
    bg+=("$sub_pid")
    others=()
    for n in 1 2 3; do [ "$n" = "$victim" ] || others+=("$n"); done
}
# Both other nodes name the same leader, and it is not the victim.
others_have_leader() {
    local l
    l=$(leader_of "${others[0]}")
    [ -n "$l" ] && [ "$l" != 0 ] && [ "$l" != "$victim" ] && [ "$(leader_of "${others[1]}")" = "$l" ]
}

scenario_kill() {
    pick_victim chaos/kill killsub
    say "kill: subscriber on node$sub_node: killing the leader node$victim"
    retain kill-before "$(date +%s)"

    local third=$((n_msgs / 3))
    publish_range "$base/m" 1 "$third"
    wait_for 30 "messages before the kill" all_acked_received "$base/m" "$work/killsub.out"
    local t_kill
    t_kill=$(now_ms)
    timeout 60 docker kill "${cid[$victim]}" >/dev/null
    # First acknowledged publish after the kill, and the new leader.
    if publish "$base/m" "$((third + 1))" "${quic[@]}"; then
        echo "$((third + 1))" >>"$work/acked"
    else
        echo "$((third + 1))" >>"$work/failed"
    fi
    local t_ack
    t_ack=$(now_ms)
    wait_for 60 "a leader among the survivors" others_have_leader
    local t_leader
    t_leader=$(now_ms)
    say "kill: first publish acknowledged $((t_ack - t_kill)) ms after the kill; leader node$(leader_of "${others[0]}") known $((t_leader - t_kill)) ms after it"
    retain kill-during "$(date +%s)" || { say "retained publish with node$victim dead not acknowledged"; return 1; }
    publish_range "$base/m" "$((third + 2))" "$n_msgs"

    if ! wait_for 60 "every acknowledged message at the subscriber" all_acked_received "$base/m" "$work/killsub.out"; then
        report_missing "$base/m" "$work/killsub.out"
        return 1
    fi
    local acked failed received
    acked=$(wc -l <"$work/acked")
    failed=$(tr '\n' ' ' <"$work/failed")
    received=$(grep -c "^$base/m " "$work/killsub.out" || true)
    say "kill: $acked/$n_msgs acknowledged, all received ($received deliveries); not acknowledged: ${failed:-none}"
    [ -z "$failed" ] || { say "publishes were refused after 4 attempts"; return 1; }
    kill -INT "$sub_pid" 2>/dev/null || true

    wait_for 30 "the same retained messages on the survivors" retained_equal_on "${others[@]}" \
        || { show_retained "${others[@]}"; return 1; }
    say "kill: retained messages equal on node${others[0]} and node${others[1]}"

    local t_start
    t_start=$(date +%s)
    timeout 60 docker start "${cid[$victim]}" >/dev/null
    wait_for 120 "node$victim back in the cluster" fleet_whole
    wait_for 30 "the same retained messages on all nodes" retained_equal_on 1 2 3 \
        || { show_retained 1 2 3; return 1; }
    say "kill: node$victim restarted and caught up in $(($(date +%s) - t_start))s; retained equal on all nodes"
}

scenario_partition() {
    pick_victim chaos/part partsub
    local aliases=() placeholder
    # Reconnect with the aliases Compose gave (the service name is the one
    # peers and routers resolve).
    mapfile -t aliases < <(docker inspect -f "{{json .NetworkSettings.Networks}}" "${cid[$victim]}" \
        | python3 -c "import json,sys; n=json.load(sys.stdin)['$net']; print('\n'.join(a for a in (n.get('Aliases') or []) if a))")
    local ip_before
    ip_before=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "${cid[$victim]}")
    say "partition: subscriber on node$sub_node: cutting the leader node$victim ($ip_before, aliases ${aliases[*]}) off $net"

    local third=$((n_msgs / 3))
    publish_range "$base/m" 1 "$third"
    wait_for 30 "messages before the partition" all_acked_received "$base/m" "$work/partsub.out"
    local t_cut
    t_cut=$(now_ms)
    timeout 60 docker network disconnect "$net" "${cid[$victim]}"
    # Another container takes the freed address, so the node comes back at
    # a new one under the same name, as a rescheduled pod would: peers and
    # routers must follow the name, not the address they saw first. (A
    # router with a static table towards a discard address: the image's
    # smallest long-running process.)
    placeholder=$(timeout 60 docker run -d --network "$net" \
        --label "com.docker.compose.project=$project" --label com.docker.compose.service=placeholder \
        --entrypoint /usr/local/bin/quicmq-router "$QUICMQ_IMAGE" \
        --listen 0.0.0.0:14567 --admin-addr off --node 00ff=127.0.0.1:9 \
        --reset-key 0000000000000000000000000000000000000000000000000000000000000000)
    say "partition: placeholder container at $(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$placeholder")"

    wait_for 60 "a leader in the majority" others_have_leader
    say "partition: majority leader node$(leader_of "${others[0]}") after $(($(now_ms) - t_cut)) ms"

    # The cut-off node cannot commit: a retained PUBLISH on it is refused
    # (PUBACK 0x80 within the propose timeout), never acknowledged.
    local t_minority rc=0
    t_minority=$(now_ms)
    timeout 20 docker exec "${cid[$victim]}" /usr/local/bin/quicmq pub -h 127.0.0.1 -p 1883 --transport tcp \
        -t chaos/retained/partition-minority -m refused -q 1 -r >>"$work/pub.out" 2>"$work/minority.err" || rc=$?
    case "$rc" in
        0) say "the cut-off node acknowledged a retained message"; return 1 ;;
        124) say "partition: cut-off node$victim neither acknowledged nor refused a retained PUBLISH within 20 s (the propose timeout is 5 s)"; return 1 ;;
        *) say "partition: cut-off node$victim refused a retained PUBLISH after $(($(now_ms) - t_minority)) ms: $(tail -n 1 "$work/minority.err")" ;;
    esac

    retain partition-majority "$(date +%s)" || { say "the majority did not take a retained message"; return 1; }
    publish_range "$base/m" "$((third + 1))" "$n_msgs"
    if ! wait_for 60 "every acknowledged message at the subscriber" all_acked_received "$base/m" "$work/partsub.out"; then
        report_missing "$base/m" "$work/partsub.out"
        return 1
    fi
    local failed
    failed=$(tr '\n' ' ' <"$work/failed")
    say "partition: $(wc -l <"$work/acked")/$n_msgs acknowledged during the partition, all received; not acknowledged: ${failed:-none}"
    [ -z "$failed" ] || return 1
    kill -INT "$sub_pid" 2>/dev/null || true

    local alias_args=() a
    for a in "${aliases[@]}"; do
        # Docker adds the container's short ID by itself.
        [[ "${cid[$victim]}" == "$a"* ]] || alias_args+=(--alias "$a")
    done
    local t_heal
    t_heal=$(date +%s)
    timeout 60 docker network connect "${alias_args[@]}" "$net" "${cid[$victim]}"
    timeout 60 docker rm -f -v "$placeholder" >/dev/null
    local ip_after
    ip_after=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "${cid[$victim]}")
    [ "$ip_after" != "$ip_before" ] || say "partition: (node$victim got its old address back)"
    wait_for 120 "node$victim back after the partition" fleet_whole
    wait_for 30 "the same retained messages on all nodes" retained_equal_on 1 2 3 \
        || { show_retained 1 2 3; return 1; }
    say "partition: healed in $(($(date +%s) - t_heal))s (address $ip_before -> $ip_after); retained equal on all nodes, the refused one nowhere"

    # The reconnected node serves again: a subscriber on it gets a message
    # published through the routers (from whichever node they pick).
    timeout 90 docker exec "${cid[$victim]}" /usr/local/bin/quicmq sub -h 127.0.0.1 -p 1883 --transport tcp \
        -t chaos/part/after -q 1 -C 1 >"$work/after.out" 2>"$work/after.err" &
    local after=$!
    bg+=("$after")
    local deadline=$(($(date +%s) + 60))
    until got "chaos/part/after healed" "$work/after.out"; do
        [ "$(date +%s)" -lt "$deadline" ] || { say "node$victim never got a message after the partition"; return 1; }
        timeout 20 "$cli" pub "${quic[@]}" -t chaos/part/after -m healed -q 1 >/dev/null 2>>"$work/pub.err" || true
        sleep 0.5
    done
    say "partition: node$victim delivers again"
}

scenario_restart() {
    # Roles from the leader's view: learners first, then followers, the
    # leader last (one election instead of up to three).
    local leader order=() n role
    leader=$(leader_of 1)
    for role in learner voter; do
        for n in 1 2 3; do
            [ "$n" != "$leader" ] || continue
            [ "$(status_of "$leader" "[m['role'] for m in s['members'] if m['node_id'] == $n][0]")" = "$role" ] && order+=("$n")
        done
    done
    order+=("$leader")
    say "restart: order ${order[*]/#/node} (leader node$leader)"
    local i=0 t
    for n in "${order[@]}"; do
        i=$((i + 1))
        t=$(date +%s)
        timeout 120 docker restart -t 30 "${cid[$n]}" >/dev/null
        # Publishers through the routers keep being served meanwhile.
        publish chaos/restart/m "$i" "${quic[@]}" || { say "publish while node$n restarts not acknowledged"; return 1; }
        wait_for 120 "node$n back after its restart" fleet_whole
        retain "restart-$n" "$(date +%s)" || { say "retained publish after restarting node$n not acknowledged"; return 1; }
        say "restart: node$n back in $(($(date +%s) - t))s; $(describe_cluster)"
    done
    wait_for 30 "the same retained messages on all nodes" retained_equal_on 1 2 3 \
        || { show_retained 1 2 3; return 1; }
    say "restart: retained equal on all nodes ($(sort -u "$work/retained.expected" | wc -l) messages)"
    scenario_roundtrip
}

passed=0
failed=0
failed_names=()
for s in "${scenarios[@]}"; do
    t=$(date +%s)
    say "--- $s"
    set +e
    (
        set -e
        trap kill_bg EXIT
        "scenario_$s"
    )
    rc=$?
    set -e
    if [ "$rc" = 0 ]; then
        # Whatever a scenario did, the fleet must be whole again.
        if wait_for 120 "the fleet to be whole after $s" fleet_whole; then
            passed=$((passed + 1))
            say "$s: ok ($(($(date +%s) - t))s)"
            continue
        fi
    fi
    failed=$((failed + 1))
    failed_names+=("$s")
    say "$s: FAILED ($(($(date +%s) - t))s)"
    for f in "$work"/*.err; do
        [ -s "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
    done
    # A broken fleet makes the next scenarios meaningless.
    fleet_whole || break
done
say "fleet up in $((t_ready - t0))s; total $(($(date +%s) - t0))s"
echo "compose: $passed passed, $failed failed"
[ "$failed" = 0 ] || { say "failed: ${failed_names[*]}"; exit 1; }
