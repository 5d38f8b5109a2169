#!/usr/bin/env bash
# Login flood: failed logins of unknown users from many parallel clients
# over several source addresses, while an honest client keeps logging in,
# against quicmq (with a password file and back-off, with back-off off,
# without a password file) and mosquitto (with a password file), each a
# fresh broker; prints a markdown table.
#
#   bash bench/logins.sh                 # table on stdout, progress on stderr
#   bash bench/logins.sh -o results.md   # table also written to results.md
#
# What it does:
#   1. builds the release binaries (cargo build --release -p quicmq-node)
#      and copies them into a temp dir; with BIN_DIR set it takes
#      quicmq-node and quicmq from there instead (CI runs it that way, tiny);
#   2. uses mosquitto and mosquitto_passwd where installed (Debian's
#      mosquitto; apt-get installs it when MOSQUITTO=install), else leaves
#      mosquitto out (MOSQUITTO=skip does so on purpose);
#   3. per case starts a fresh broker on free 127.0.0.1 ports with a
#      password file holding `honest`, runs `quicmq bench login` (LOGINS
#      attempts as unknown users from CLIENTS clients spread over SOURCES
#      addresses 127.0.0.2..; the honest client logs in from 127.0.0.1
#      every HONEST_MS ms), reads the broker's VmRSS before, VmHWM (peak)
#      and VmRSS after from /proc/PID/status, stops the broker;
#   4. fails (exit 1) when a case errors, an attempt connects or fails
#      without a CONNACK, or an honest quicmq login fails.
# Every process it starts is killed on exit (trap EXIT); every load is
# bounded by a count and a time limit (LIMIT s); all traffic goes to
# 127.0.0.0/8.
#
# Sizes through the environment (defaults in brackets):
#   LOGINS [10000]  CLIENTS [32]  SOURCES [32]  HONEST_MS [100]  LIMIT [600]
#   MOSQUITTO [auto: use it where installed | install | skip]
set -euo pipefail

cd "$(dirname "$0")/.."

OUT_FILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o) OUT_FILE=$2; shift 2 ;;
        -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
        *) echo "usage: bash bench/logins.sh [-o FILE]" >&2; exit 2 ;;
    esac
done

LOGINS=${LOGINS:-10000}
CLIENTS=${CLIENTS:-32}
SOURCES=${SOURCES:-32}
HONEST_MS=${HONEST_MS:-100}
LIMIT=${LIMIT:-600}
MOSQUITTO=${MOSQUITTO:-auto}
[ "$SOURCES" -ge 1 ] && [ "$SOURCES" -le 200 ] || { echo "SOURCES must be 1 to 200" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_init logins

# ---------------------------------------------------------------- tools
bench_binaries
HAVE_MOSQUITTO=false
if mosquitto_wanted && command -v mosquitto_passwd >/dev/null; then
    HAVE_MOSQUITTO=true
fi

LAST_SOURCE=$((1 + SOURCES))
SOURCE_RANGE="127.0.0.2+$((SOURCES - 1))"

# rss_kib PID FIELD: VmRSS or VmHWM of PID in KiB.
rss_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

ROWS=()
FAILED=0

# run_case NAME PID PORT HONEST: the flood against the broker PID listening
# on PORT; HONEST=1 when the honest client must get in every time.
run_case() {
    local name=$1 pid=$2 port=$3 honest=$4 before json
    sleep 1
    before=$(rss_kib "$pid" VmRSS)
    log "$name: $LOGINS failed logins from $CLIENTS clients over 127.0.0.2..127.0.0.$LAST_SOURCE"
    if ! json=$("$QUICMQ" bench login -h 127.0.0.1 -p "$port" --transport tcp \
        -u honest -P honest-pw -n "$LOGINS" -c "$CLIENTS" --sources "$SOURCE_RANGE" \
        --honest-interval-ms "$HONEST_MS" -d "$LIMIT" --json); then
        log "$name: quicmq bench login failed"
        FAILED=1
        return
    fi
    local hwm after
    hwm=$(rss_kib "$pid" VmHWM)
    after=$(rss_kib "$pid" VmRSS)
    local row
    row=$(NAME="$name" HONEST="$honest" BEFORE="$before" HWM="$hwm" AFTER="$after" JSON="$json" python3 - <<'EOF'
import json, os, sys
j = json.loads(os.environ["JSON"])
mib = lambda kib: int(kib) / 1024
outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(j["outcomes"].items()))
bad = [k for k in j["outcomes"] if k in ("connected", "error")]
print("| {} | {} | {:.0f} | {} | {:.1f} | {} / {} | {:.1f} / {:.1f} | {:.1f} / {:.1f} / {:.1f} |".format(
    os.environ["NAME"], j["attempts"], j["attempts_per_s"], outcomes, j["checked_per_source_per_s"],
    j["honest_ok"], j["honest_failed"], j["honest_connect_p50_ms"], j["honest_connect_p99_ms"],
    mib(os.environ["BEFORE"]), mib(os.environ["HWM"]), mib(os.environ["AFTER"])))
if bad:
    print(f"unexpected outcomes {bad}: {j.get('first_error')}", file=sys.stderr)
    sys.exit(3)
if j["attempts"] == 0:
    sys.exit(3)
if os.environ["HONEST"] == "1" and (j["honest_failed"] > 0 or j["honest_ok"] == 0):
    print("an honest login failed", file=sys.stderr)
    sys.exit(3)
EOF
    ) || { FAILED=1; log "$name: FAILED"; }
    ROWS+=("$row")
    log "$name: $row"
}

# quicmq_case NAME HONEST EXTRA...: a fresh quicmq-node.
quicmq_case() {
    local name=$1 honest=$2 pid
    shift 2
    free_port
    local port=$PORT
    "$NODE" --data-dir "$WORK/$name-data" --tcp-addr "127.0.0.1:$port" --quic-addr off \
        --routed-addr off --tls-addr off --grpc-addr 127.0.0.1:0 --admin-addr off \
        --allow-anonymous false --log error "$@" &
    pid=$!
    PIDS+=("$pid")
    wait_tcp "$port" "$pid" || die "$name did not start"
    run_case "$name" "$pid" "$port" "$honest"
    stop_pid "$pid"
}

# ---------------------------------------------------------------- cases
echo "honest-pw" | "$QUICMQ" passwd "$WORK/passwd" honest --stdin >&2
quicmq_case "quicmq, password file" 1 --password-file "$WORK/passwd"
quicmq_case "quicmq, password file, no back-off" 1 --password-file "$WORK/passwd" --auth-backoff-after 0
# Without a password file nobody logs in with a user name (not even the
# honest client): the baseline of a broker that does no password work.
quicmq_case "quicmq, no password file" 0

if $HAVE_MOSQUITTO; then
    MOSQUITTO_VERSION=$( (mosquitto -h 2>&1 || true) | sed -n "s/^mosquitto version //p" | head -1)
    mosquitto_passwd -b -c "$WORK/mosquitto.passwd" honest honest-pw >&2
    free_port
    # As root, mosquitto would switch to its own user, which cannot read
    # the work directory.
    cat >"$WORK/mosquitto.conf" <<EOF
user root
listener $PORT 127.0.0.1
allow_anonymous false
password_file $WORK/mosquitto.passwd
persistence false
log_dest none
max_connections -1
EOF
    mosquitto -c "$WORK/mosquitto.conf" 2>"$WORK/mosquitto.log" &
    mpid=$!
    PIDS+=("$mpid")
    wait_tcp "$PORT" "$mpid" || die "mosquitto did not start: $(cat "$WORK/mosquitto.log")"
    run_case "mosquitto $MOSQUITTO_VERSION, password file" "$mpid" "$PORT" 0
else
    log "mosquitto not installed: left out (MOSQUITTO=install installs it)"
fi

# ---------------------------------------------------------------- report
{
    echo "Login flood: $LOGINS failed logins (unknown users) from $CLIENTS parallel TCP clients over $SOURCES source addresses; an honest client logs in every $HONEST_MS ms from 127.0.0.1."
    echo
    echo "| broker | attempts | attempts/s | outcomes (CONNACK reason) | password checks per source, max/s | honest logins ok / failed | honest connect p50 / p99, ms | broker RSS start / peak / end, MiB |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee ${OUT_FILE:+"$OUT_FILE"}
exit "$FAILED"
