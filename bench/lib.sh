# Shell helpers shared by the benchmark scripts (bench/run.sh,
# bench/router.sh, bench/logins.sh, bench/memory.sh). Source it after
# `set -euo pipefail`, then call `bench_init NAME`.

# bench_init NAME: log prefix, a work directory, and cleanup on exit of
# every process recorded in PIDS.
bench_init() {
    BENCH_NAME=$1
    PIDS=()
    WORK=$(mktemp -d "/tmp/quicmq-$1.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    USED_PORTS=" "
    PORT=""
    APT_UPDATED=false
}

log() { echo "[$BENCH_NAME $(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}

# forget_pid PID: a process that was stopped on purpose.
forget_pid() {
    local keep=() pid
    for pid in "${PIDS[@]}"; do
        [ "$pid" = "$1" ] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}

# stop_pid PID: kill a process this script started and forget it.
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}

# bench_binaries: QUICMQ and NODE, copies of quicmq and quicmq-node (so a
# rebuild meanwhile changes nothing): from BIN_DIR when set, else from a
# release build made now.
bench_binaries() {
    mkdir -p "$WORK/bin"
    if [ -n "${BIN_DIR:-}" ]; then
        cp "$BIN_DIR/quicmq" "$BIN_DIR/quicmq-node" "$WORK/bin/"
    else
        log "building release binaries"
        cargo build --release -p quicmq-node >&2
        cp target/release/quicmq target/release/quicmq-node "$WORK/bin/"
    fi
    QUICMQ=$WORK/bin/quicmq
    NODE=$WORK/bin/quicmq-node
}

# mosquitto_wanted: whether to measure mosquitto beside quicmq, after
# MOSQUITTO (auto: where installed; install: install it first; skip).
mosquitto_wanted() {
    export PATH="$PATH:/usr/sbin:/sbin"
    case "${MOSQUITTO:-auto}" in
        install) command -v mosquitto >/dev/null || { log "installing mosquitto"; apt_install mosquitto; } ;;
        skip) return 1 ;;
        auto) ;;
        *) die "MOSQUITTO must be auto, install or skip" ;;
    esac
    command -v mosquitto >/dev/null
}

# apt_install PACKAGE: Debian's package, installed on first need (root only).
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        die "$1 is missing and this is not root: install it (apt-get install -y $1)"
    fi
    if ! $APT_UPDATED; then
        apt-get update -qq >&2
        APT_UPDATED=true
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2
}

# free_port: sets PORT to a port no TCP or UDP socket uses (nor one handed
# out before).
free_port() {
    local port hex _
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 30000))
        case "$USED_PORTS" in *" $port "*) continue ;; esac
        hex=$(printf ':%04X ' "$port")
        if ! grep -q "$hex" /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null; then
            USED_PORTS="$USED_PORTS$port "
            PORT=$port
            return
        fi
    done
    die "no free port found"
}

# wait_tcp PORT PID: wait until 127.0.0.1:PORT accepts (while PID lives).
wait_tcp() {
    local _
    for _ in $(seq 200); do
        kill -0 "$2" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# wait_line FILE TEXT PID SECS: wait until FILE contains TEXT.
wait_line() {
    local i
    for i in $(seq $(($4 * 20))); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# now_us: sets NOW_US to the wall clock in microseconds (no process
# started, so it can be called in tight polling loops).
now_us() {
    local t=${EPOCHREALTIME/[.,]/}
    NOW_US=$((10#$t))
}

# http_get PORT PATH: sets HTTP_BODY to the body of GET PATH on
# 127.0.0.1:PORT (no process started); fails unless the answer is 200
# within 2 s.
http_get() {
    local fd response=""
    HTTP_BODY=""
    { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" 1>&"$fd" 2>/dev/null || true
    IFS= read -r -d '' -t 2 response <&"$fd" || true
    exec {fd}>&-
    case "$response" in "HTTP/1.1 200"*) ;; *) return 1 ;; esac
    HTTP_BODY=${response#*$'\r\n\r\n'}
}

# cpu_ticks PID: utime + stime of PID (all threads) in clock ticks, or 0.
cpu_ticks() {
    awk '{ sub(/.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Checks that failed, for check_delivered and finish_checks.
FAILURES=()

# check_delivered LABEL SUB PUB: records a failure unless the `bench sub`
# summary SUB received every message it expected, the `bench pub` summary
# PUB completed some, and neither counted errors (a missing summary is a
# failure too).
check_delivered() {
    local label=$1 sub=$2 pub=$3
    if ! jq -e --argjson s "$sub" --argjson p "$pub" -n '
        ($s.messages != null) and ($s.expected != null) and ($s.messages >= $s.expected)
        and (($p.messages // 0) > 0)' >/dev/null; then
        FAILURES+=("$label: delivered $(jq -r '.messages // "none"' <<<"$sub") of $(jq -r '.expected // "?"' <<<"$sub")")
    fi
    if [ "$(jq -r '.errors // 0' <<<"$pub")" != 0 ] || [ "$(jq -r '.errors // 0' <<<"$sub")" != 0 ]; then
        log "  errors: pub: $(jq -r '.first_error // "-"' <<<"$pub"); sub: $(jq -r '.first_error // "-"' <<<"$sub")"
        FAILURES+=("$label: errors")
    fi
}

# finish_checks OK_MESSAGE: exits 1 after listing the failures, if any.
finish_checks() {
    if [ "${#FAILURES[@]}" -gt 0 ]; then
        local failure
        for failure in "${FAILURES[@]}"; do log "FAILED: $failure"; done
        exit 1
    fi
    log "$1"
}
