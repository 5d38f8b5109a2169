#!/usr/bin/env python3
"""Offline checks of the quicmq chart (run by .ci/chart-check).

Uses Helm's own Go library through helm-python-sdk (`helm_python`): lints the
chart, validates values against values.schema.json, renders it for several
value sets and asserts that the manifests match what the binaries expect
(ports, probes, environment, security context, data volume, cluster mTLS
material, ...).

Writes every scenario's manifests to OUT_DIR as `<scenario>.yaml` (core
Kubernetes kinds, for kubernetes-validate --strict) and `<scenario>.crds.yaml`
(CRD kinds: ServiceMonitor, Certificate, checked here structurally).

usage: check_render.py CHART_DIR OUT_DIR KUBE_VERSION
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import sys
import traceback
from typing import Any, Callable

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

import helm_python as helm

RELEASE = "quicmq"
NAMESPACE = "mq"
CRD_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "Certificate": "cert-manager.io/v1",
}

# Every TOML key the chart may put in node.toml / router.toml: the binaries
# read their files with deny_unknown_fields, so an unknown key stops them.
NODE_KEYS = {
    "data_dir", "quic_addr", "routed_addr", "tcp_addr", "tls_addr", "grpc_addr",
    "admin_addr", "cluster_id", "voters", "cert", "key", "log",
    "member_down_after", "member_remove_after",
    "quic_lb_config_id", "quic_lb_nonce_len",
    "max_packet_size", "receive_maximum", "topic_alias_maximum", "max_keep_alive",
    "max_session_expiry", "max_queued_messages", "queue_drop_policy",
    "max_subscriptions", "max_topic_levels", "max_topic_length",
    "max_connections", "max_connections_per_ip", "max_handshake_rate_per_ip",
    "handshake_burst", "max_publish_rate", "publish_burst", "quic_retry_above",
    "admin_token_file", "admin_open_paths",
}
ROUTER_KEYS = {
    "listen", "internal_addr", "admin_addr", "log", "probe_interval_ms",
    "dead_after_ms", "quic_lb_config_id", "quic_lb_nonce_len",
}

PASSED = 0
FAILED: list[str] = []


def check(name: str, fn: Callable[[], None]) -> None:
    """Run one named check; record a failure instead of stopping."""
    global PASSED
    try:
        fn()
        PASSED += 1
        print(f"ok    {name}")
    except Exception as exc:  # noqa: BLE001 - every failure is reported
        FAILED.append(name)
        detail = str(exc) or traceback.format_exc(limit=2)
        print(f"FAIL  {name}: {detail}")


def expect(cond: Any, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def eq(actual: Any, expected: Any, what: str) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


class Render:
    """One rendering of the chart, parsed."""

    def __init__(self, chart: helm.Chart, values: dict[str, Any]):
        self.values = chart.merge_values(values)
        self.files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        self.docs: list[dict[str, Any]] = []
        for path, text in sorted(self.files.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("__source", path)
                    self.docs.append(doc)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        if len(found) != 1:
            raise AssertionError(f"{kind}/{name}: expected one, found {len(found)}")
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return any(d["metadata"]["name"] == name for d in self.all(kind))

    def write(self, out_dir: str, scenario: str) -> None:
        core = [strip(d) for d in self.docs if d["kind"] not in CRD_KINDS]
        crds = [strip(d) for d in self.docs if d["kind"] in CRD_KINDS]
        with open(os.path.join(out_dir, f"{scenario}.yaml"), "w") as f:
            yaml.safe_dump_all(core, f, sort_keys=False)
        with open(os.path.join(out_dir, f"{scenario}.crds.yaml"), "w") as f:
            yaml.safe_dump_all(crds, f, sort_keys=False)


def strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "__source"}


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    for c in workload["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name} in {workload['metadata']['name']}")


def env_map(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def port_map(c: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {p["name"]: (p["containerPort"], p.get("protocol", "TCP")) for p in c["ports"]}


def svc_ports(svc: dict[str, Any]) -> dict[str, tuple[int, str, Any]]:
    return {
        p["name"]: (p["port"], p.get("protocol", "TCP"), p.get("targetPort"))
        for p in svc["spec"]["ports"]
    }


def toml_of(r: Render, key: str) -> dict[str, Any]:
    cm = r.get("ConfigMap", f"{RELEASE}-config")
    return tomllib.loads(cm["data"][key])


def pod_host(ordinal: int) -> str:
    return f"{RELEASE}-node-{ordinal}.{RELEASE}-node-headless.{NAMESPACE}.svc.cluster.local"


def ordinals(r: "Render", count: int) -> range:
    start = r.values["node"]["startOrdinal"]
    return range(start, start + count)


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------- checks


def check_node(r: Render, replicas: int, voters: int, join_all: bool) -> None:
    sts = r.get("StatefulSet", f"{RELEASE}-node")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    c = container(sts, "node")
    env = env_map(c)

    def statefulset() -> None:
        eq(spec["replicas"], replicas, "replicas")
        eq(spec["serviceName"], f"{RELEASE}-node-headless", "serviceName")
        # quicmq reserves node ID 0, and the node ID is the ordinal.
        eq(spec["ordinals"]["start"], r.values["node"]["startOrdinal"], "ordinals.start")
        expect(spec["ordinals"]["start"] >= 1, "the first ordinal (= node ID) must be 1 or more")
        expect(matches(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"]),
               "selector does not match the pod template labels")
        eq(c["command"], ["/usr/local/bin/quicmq-node"], "command")
        eq(c["args"], ["--config", "/etc/quicmq/config/node.toml"], "args")
        eq(pod.get("automountServiceAccountToken"), False, "automountServiceAccountToken")

    def ports() -> None:
        eq(port_map(c), {
            "quic": (14567, "UDP"), "routed": (14568, "UDP"), "mqtt": (1883, "TCP"),
            "mqtts": (8883, "TCP"), "grpc": (7000, "TCP"), "admin": (8080, "TCP"),
        }, "node container ports")

    def probes() -> None:
        named = port_map(c)
        for probe, path in [("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"),
                            ("startupProbe", "/health/live")]:
            get = c[probe]["httpGet"]
            eq(get["path"], path, f"{probe} path")
            port = get["port"]
            eq(named[port][0] if isinstance(port, str) else port, 8080, f"{probe} port")

    def security() -> None:
        psc = pod["securityContext"]
        csc = c["securityContext"]
        eq(psc["runAsUser"], 10001, "pod runAsUser")
        eq(psc["runAsGroup"], 10001, "pod runAsGroup")
        eq(psc["fsGroup"], 10001, "pod fsGroup")
        eq(psc["runAsNonRoot"], True, "pod runAsNonRoot")
        eq(psc["seccompProfile"]["type"], "RuntimeDefault", "pod seccomp")
        eq(csc["runAsNonRoot"], True, "runAsNonRoot")
        eq(csc["runAsUser"], 10001, "runAsUser")
        eq(csc["readOnlyRootFilesystem"], True, "readOnlyRootFilesystem")
        eq(csc["allowPrivilegeEscalation"], False, "allowPrivilegeEscalation")
        eq(csc["capabilities"]["drop"], ["ALL"], "capabilities.drop")
        expect(not csc["capabilities"].get("add"), "capabilities added")
        eq(csc["seccompProfile"]["type"], "RuntimeDefault", "seccomp")

    def data_volume() -> None:
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        eq(mounts.get("data"), "/var/lib/quicmq", "data mount")
        expect("/tmp" in mounts.values(), "no writable /tmp (root filesystem is read-only)")
        if r.values["node"]["persistence"]["enabled"]:
            claims = {t["metadata"]["name"]: t for t in spec["volumeClaimTemplates"]}
            expect("data" in claims, "no volumeClaimTemplate `data`")
            eq(claims["data"]["spec"]["resources"]["requests"]["storage"],
               r.values["node"]["persistence"]["size"], "claim size")
            expect(all(v["name"] != "data" for v in pod["volumes"]), "data is both PVC and volume")
        else:
            vols = {v["name"]: v for v in pod["volumes"]}
            expect("emptyDir" in vols["data"], "data without persistence must be an emptyDir")
            expect("volumeClaimTemplates" not in spec, "PVC rendered with persistence off")

    def environment() -> None:
        names = [e["name"] for e in c["env"]]
        # Dependent variables ($(POD_NAME)) only expand if defined earlier.
        expect(names.index("POD_NAME") < names.index("QUICMQ_ADVERTISE_ADDR"), "POD_NAME after use")
        expect(names.index("POD_NAMESPACE") < names.index("QUICMQ_ADVERTISE_ADDR"),
               "POD_NAMESPACE after use")
        eq(env["QUICMQ_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"],
           "metadata.labels['apps.kubernetes.io/pod-index']", "QUICMQ_NODE_ID source")
        eq(env["QUICMQ_ADVERTISE_ADDR"]["value"],
           f"$(POD_NAME).{RELEASE}-node-headless.$(POD_NAMESPACE).svc.cluster.local",
           "QUICMQ_ADVERTISE_ADDR")
        expected_join = [f"{pod_host(i)}:7000" for i in ordinals(r, replicas if join_all else 1)]
        eq(env["QUICMQ_JOIN"]["value"].split(","), expected_join, "QUICMQ_JOIN")
        keys = r.values["clusterKeys"]["existingSecret"] or f"{RELEASE}-keys"
        for var, key, optional in [("QUICMQ_RESET_KEY", "reset-key", None),
                                   ("QUICMQ_TOKEN_KEY", "token-key", None),
                                   ("QUICMQ_QUIC_LB_KEY", "quic-lb-key", True)]:
            ref = env[var]["valueFrom"]["secretKeyRef"]
            eq((ref["name"], ref["key"], ref.get("optional")), (keys, key, optional), var)
        expect(all("value" not in env[v] for v in ("QUICMQ_RESET_KEY", "QUICMQ_TOKEN_KEY")),
               "a key is inlined in the pod spec")
        for name, e in env.items():
            expect(name in ("POD_NAME", "POD_NAMESPACE") or name.startswith("QUICMQ_"),
                   f"unexpected env var {name}")

    def config() -> None:
        toml = toml_of(r, "node.toml")
        unknown = set(toml) - NODE_KEYS
        expect(not unknown, f"unknown node.toml keys {sorted(unknown)}")
        eq(toml["data_dir"], "/var/lib/quicmq", "data_dir")
        eq(toml["quic_addr"], "0.0.0.0:14567", "quic_addr")
        eq(toml["routed_addr"], "0.0.0.0:14568", "routed_addr")
        eq(toml["tcp_addr"], "0.0.0.0:1883", "tcp_addr")
        eq(toml["tls_addr"], "0.0.0.0:8883", "tls_addr")
        eq(toml["grpc_addr"], "0.0.0.0:7000", "grpc_addr")
        eq(toml["admin_addr"], "0.0.0.0:8080", "admin_addr")
        # The admin API listens on the pod network: it must require a token.
        eq(toml["admin_token_file"], "/etc/quicmq/admin/admin-token", "admin_token_file")
        open_paths = [p for p in toml["admin_open_paths"].split(",") if p]
        eq(open_paths, r.values["adminApi"]["openPaths"], "admin_open_paths")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            path = c.get(probe, {}).get("httpGet", {}).get("path")
            expect(path is None or path in open_paths,
                   f"{probe} {path} needs the admin token")
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        eq(mounts.get("admin-token"), "/etc/quicmq/admin", "admin-token mount")
        token_vol = [v for v in pod["volumes"] if v["name"] == "admin-token"][0]["secret"]
        token_secret = r.values["adminApi"]["tokenSecret"] or f"{RELEASE}-admin-token"
        eq((token_vol["secretName"], token_vol["items"]),
           (token_secret, [{"key": "admin-token", "path": "admin-token"}]), "admin-token volume")
        generated = r.has("Secret", f"{RELEASE}-admin-token")
        eq(generated, not r.values["adminApi"]["tokenSecret"], "generated admin-token Secret")
        if generated:
            token = r.get("Secret", f"{RELEASE}-admin-token")["data"]["admin-token"]
            expect(len(base64.b64decode(token)) >= 16, "generated admin token too short")
        eq(toml["voters"], voters, "voters")
        eq(toml["member_remove_after"], r.values["cluster"]["memberRemoveAfterMs"],
           "member_remove_after")
        down_after = r.values["cluster"].get("memberDownAfterMs")
        eq(toml.get("member_down_after"), down_after, "member_down_after")
        eq(toml["cluster_id"], r.values["cluster"]["id"] or f"{NAMESPACE}-{RELEASE}", "cluster_id")
        expect(isinstance(toml["max_session_expiry"], int), "max_session_expiry is not an integer")
        expect(toml["queue_drop_policy"] in ("drop-oldest", "drop-newest"), "queue_drop_policy")
        for secret_key in ("reset_key", "token_key", "quic_lb_key"):
            expect(secret_key not in toml, f"{secret_key} in a ConfigMap")
        tls = [v for v in pod["volumes"] if v["name"] == "tls"]
        if tls:
            eq((toml.get("cert"), toml.get("key")),
               ("/etc/quicmq/tls/tls.crt", "/etc/quicmq/tls/tls.key"), "cert/key paths")
            mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
            eq(mounts["tls"], "/etc/quicmq/tls", "tls mount")
        else:
            expect("cert" not in toml and "key" not in toml, "cert/key set without a TLS Secret")
        cm_vol = [v for v in pod["volumes"] if v["name"] == "config"][0]
        eq(cm_vol["configMap"]["name"], f"{RELEASE}-config", "config volume")

    def headless() -> None:
        svc = r.get("Service", f"{RELEASE}-node-headless")
        eq(svc["spec"]["clusterIP"], "None", "clusterIP")
        eq(svc["spec"]["publishNotReadyAddresses"], True, "publishNotReadyAddresses")
        ports = svc_ports(svc)
        eq(ports["grpc"][:2], (7000, "TCP"), "headless grpc")
        eq(ports["routed"][:2], (14568, "UDP"), "headless routed")
        eq(ports["admin"][:2], (8080, "TCP"), "headless admin")
        expect(matches(svc["spec"]["selector"], spec["template"]["metadata"]["labels"]),
               "headless Service selects no node pod")

    def mqtt_service() -> None:
        if not r.values["service"]["mqtt"]["enabled"]:
            expect(not r.has("Service", f"{RELEASE}-mqtt"), "mqtt Service rendered while disabled")
            return
        svc = r.get("Service", f"{RELEASE}-mqtt")
        eq(svc["spec"]["type"], r.values["service"]["mqtt"]["type"], "mqtt Service type")
        eq({k: v[:2] for k, v in svc_ports(svc).items()},
           {"mqtt": (1883, "TCP"), "mqtts": (8883, "TCP")}, "mqtt Service ports")
        expect(matches(svc["spec"]["selector"], spec["template"]["metadata"]["labels"]),
               "mqtt Service does not select node pods")
        for p in svc["spec"]["ports"]:
            expect(p["targetPort"] in port_map(c), f"targetPort {p['targetPort']} not a node port")

    def pdb() -> None:
        p = r.get("PodDisruptionBudget", f"{RELEASE}-node")
        eq(p["spec"]["maxUnavailable"], 1, "node PDB maxUnavailable")
        expect(matches(p["spec"]["selector"]["matchLabels"], spec["template"]["metadata"]["labels"]),
               "node PDB selects no node pod")

    def spread() -> None:
        ts = pod.get("topologySpreadConstraints", [])
        ts_cfg = r.values["node"]["topologySpread"]
        if ts_cfg["enabled"]:
            eq(ts[0]["topologyKey"], "topology.kubernetes.io/zone", "spread key")
            eq(ts[0]["whenUnsatisfiable"], "DoNotSchedule" if ts_cfg["hard"] else "ScheduleAnyway",
               "spread strictness")
            expect(matches(ts[0]["labelSelector"]["matchLabels"], spec["template"]["metadata"]["labels"]),
                   "spread selector")

    for name, fn in [("statefulset", statefulset), ("ports", ports), ("probes", probes),
                     ("securityContext", security), ("data volume", data_volume),
                     ("environment", environment), ("node.toml", config),
                     ("headless Service", headless), ("mqtt Service", mqtt_service),
                     ("PodDisruptionBudget", pdb), ("zone spread", spread)]:
        check(f"{r.scenario}: node {name}", fn)


def check_auth(r: Render, secret: str | None, anonymous: bool) -> None:
    """Nodes get allow_anonymous and, with a Secret, the password file."""
    sts = r.get("StatefulSet", f"{RELEASE}-node")
    pod = sts["spec"]["template"]["spec"]
    c = container(sts, "node")
    env = env_map(c)
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod["volumes"]}

    def auth() -> None:
        eq(env["QUICMQ_ALLOW_ANONYMOUS"]["value"], "true" if anonymous else "false",
           "QUICMQ_ALLOW_ANONYMOUS")
        if secret is None:
            expect("QUICMQ_PASSWORD_FILE" not in env, "password file without a Secret")
            expect("auth" not in vols, "auth volume without a Secret")
            return
        eq(env["QUICMQ_PASSWORD_FILE"]["value"], "/etc/quicmq/auth/passwd", "QUICMQ_PASSWORD_FILE")
        eq(mounts["auth"]["mountPath"], "/etc/quicmq/auth", "auth mount")
        expect(mounts["auth"].get("readOnly") is True, "auth mount must be read-only")
        eq(vols["auth"]["secret"]["secretName"], secret, "auth Secret")
        eq(vols["auth"]["secret"]["items"], [{"key": "passwd", "path": "passwd"}], "auth Secret items")

    def client_ca() -> None:
        ca = r.values["auth"]["clientCaSecret"]
        if not ca:
            expect("QUICMQ_CLIENT_CA" not in env, "client CA without a Secret")
            expect("client-ca" not in vols, "client-ca volume without a Secret")
            return
        eq(env["QUICMQ_CLIENT_CA"]["value"], "/etc/quicmq/client-ca/ca.pem", "QUICMQ_CLIENT_CA")
        eq(env["QUICMQ_REQUIRE_CLIENT_CERT"]["value"],
           "true" if r.values["auth"]["requireClientCert"] else "false", "QUICMQ_REQUIRE_CLIENT_CERT")
        eq(env["QUICMQ_CERT_IDENTITY"]["value"], r.values["auth"]["certIdentity"], "QUICMQ_CERT_IDENTITY")
        eq(mounts["client-ca"]["mountPath"], "/etc/quicmq/client-ca", "client-ca mount")
        expect(mounts["client-ca"].get("readOnly") is True, "client-ca mount must be read-only")
        eq(vols["client-ca"]["secret"]["secretName"], ca, "client-ca Secret")
        eq(vols["client-ca"]["secret"]["items"], [{"key": "ca.pem", "path": "ca.pem"}],
           "client-ca Secret items")

    check(f"{r.scenario}: authentication settings", auth)
    check(f"{r.scenario}: client certificate settings", client_ca)


def check_router(r: Render, kind: str, replicas: int, node_replicas: int) -> None:
    if not r.values["router"]["enabled"]:
        check(f"{r.scenario}: no router resources", lambda: expect(
            not any(d["metadata"]["name"].startswith(f"{RELEASE}-router") for d in r.docs)
            and not r.has("Service", RELEASE), "router resources rendered while disabled"))
        return
    w = r.get(kind, f"{RELEASE}-router")
    c = container(w, "router")
    env = env_map(c)
    labels = w["spec"]["template"]["metadata"]["labels"]

    def workload() -> None:
        if kind == "Deployment":
            eq(w["spec"]["replicas"], replicas, "router replicas")
        else:
            expect("replicas" not in w["spec"], "DaemonSet with replicas")
        other = "DaemonSet" if kind == "Deployment" else "Deployment"
        expect(not r.all(other), f"both router kinds rendered ({other})")
        eq(c["command"], ["/usr/local/bin/quicmq-router"], "command")
        eq(c["args"], ["--config", "/etc/quicmq/config/router.toml"], "args")
        eq(port_map(c), {"quic": (14567, "UDP"), "internal": (14569, "UDP"), "admin": (8090, "TCP")},
           "router ports")
        csc = c["securityContext"]
        eq((csc["runAsUser"], csc["readOnlyRootFilesystem"], csc["capabilities"]["drop"]),
           (10001, True, ["ALL"]), "router securityContext")

    def probes() -> None:
        for probe, path in [("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")]:
            get = c[probe]["httpGet"]
            eq(get["path"], path, f"router {probe} path")
            eq(port_map(c)[get["port"]][0], 8090, f"router {probe} port")

    def environment() -> None:
        eq(env["QUICMQ_SEEDS"]["value"].split(","),
           [f"{pod_host(i)}:7000" for i in ordinals(r, node_replicas)], "QUICMQ_SEEDS")
        keys = r.values["clusterKeys"]["existingSecret"] or f"{RELEASE}-keys"
        eq(env["QUICMQ_RESET_KEY"]["valueFrom"]["secretKeyRef"]["name"], keys, "router reset key")
        eq(env["QUICMQ_QUIC_LB_KEY"]["valueFrom"]["secretKeyRef"].get("optional"), True,
           "router QUIC-LB key optional")

    def config() -> None:
        toml = toml_of(r, "router.toml")
        unknown = set(toml) - ROUTER_KEYS
        expect(not unknown, f"unknown router.toml keys {sorted(unknown)}")
        eq(toml["listen"], "0.0.0.0:14567", "listen")
        eq(toml["internal_addr"], "0.0.0.0:14569", "internal_addr")
        eq(toml["admin_addr"], "0.0.0.0:8090", "admin_addr")
        expect(toml["dead_after_ms"] > toml["probe_interval_ms"], "dead_after_ms <= probe_interval_ms")

    def lb_service() -> None:
        svc = r.get("Service", RELEASE)
        eq(svc["spec"]["type"], "LoadBalancer", "public Service type")
        eq(list(svc_ports(svc).values()), [(14567, "UDP", "quic")], "public Service ports")
        expect(matches(svc["spec"]["selector"], labels), "public Service does not select routers")
        eq(svc["spec"].get("externalTrafficPolicy"), "Local", "externalTrafficPolicy")
        admin = r.get("Service", f"{RELEASE}-router-admin")
        eq(svc_ports(admin)["admin"][:2], (8090, "TCP"), "router admin Service")

    def pdb() -> None:
        p = r.get("PodDisruptionBudget", f"{RELEASE}-router")
        expect(matches(p["spec"]["selector"]["matchLabels"], labels), "router PDB selects no router")

    for name, fn in [("workload", workload), ("probes", probes), ("environment", environment),
                     ("router.toml", config), ("LoadBalancer Service", lb_service),
                     ("PodDisruptionBudget", pdb)]:
        check(f"{r.scenario}: router {name}", fn)


# ---------------------------------------------------------------- cluster mTLS

CLUSTER_TLS_DIR = "/etc/quicmq/cluster-tls"
OID_SAN, OID_EKU, OID_BASIC = "2.5.29.17", "2.5.29.37", "2.5.29.19"
OID_SKID, OID_AKID = "2.5.29.14", "2.5.29.35"
SERVER_AUTH, CLIENT_AUTH = "1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"


def der(data: bytes, i: int = 0) -> tuple[int, bytes, int]:
    """One DER element at i: (tag, contents, index after it)."""
    tag, n = data[i], data[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[i:i + k], "big")
        i += k
    return tag, data[i:i + n], i + n


def der_items(contents: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(contents):
        tag, body, i = der(contents, i)
        out.append((tag, body))
    return out


def oid(body: bytes) -> str:
    parts, value = [body[0] // 40, body[0] % 40], 0
    for b in body[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def der_time(tag: int, body: bytes) -> datetime.datetime:
    fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
    return datetime.datetime.strptime(body.decode(), fmt)


def pem_blocks(text: str, label: str) -> list[bytes]:
    found = re.findall(rf"-----BEGIN {label}-----(.*?)-----END {label}-----", text, re.S)
    return [base64.b64decode("".join(b.split())) for b in found]


class Cert:
    """The fields of an X.509 certificate these checks need (no signature check)."""

    def __init__(self, data: bytes):
        tbs = der_items(der_items(der(data)[1])[0][1])
        if tbs[0][0] == 0xA0:  # explicit version
            tbs = tbs[1:]
        self.issuer, self.subject = tbs[2][1], tbs[4][1]
        (t0, nb), (t1, na) = der_items(tbs[3][1])
        self.not_before, self.not_after = der_time(t0, nb), der_time(t1, na)
        self.public_key = der_items(tbs[5][1])[1][1]  # BIT STRING contents
        self.ext: dict[str, bytes] = {}
        for tag, body in tbs[6:]:
            if tag == 0xA3:
                for _, e in der_items(der_items(body)[0][1]):
                    parts = der_items(e)
                    self.ext[oid(parts[0][1])] = parts[-1][1]

    @property
    def dns_names(self) -> list[str]:
        if OID_SAN not in self.ext:
            return []
        return [b.decode() for t, b in der_items(der(self.ext[OID_SAN])[1]) if t == 0x82]

    @property
    def ekus(self) -> set[str]:
        if OID_EKU not in self.ext:
            return set()
        return {oid(b) for _, b in der_items(der(self.ext[OID_EKU])[1])}

    @property
    def is_ca(self) -> bool:
        if OID_BASIC not in self.ext:
            return False
        items = der_items(der(self.ext[OID_BASIC])[1])
        return bool(items) and items[0] == (0x01, b"\xff")

    @property
    def key_id(self) -> bytes:
        return der(self.ext[OID_SKID])[1]

    @property
    def authority_key_id(self) -> bytes:
        return [b for t, b in der_items(der(self.ext[OID_AKID])[1]) if t == 0x80][0]


def ec_public_key(sec1: bytes) -> bytes:
    """The public key a SEC1 ECPrivateKey carries ([1] BIT STRING)."""
    for tag, body in der_items(der(sec1)[1]):
        if tag == 0xA1:
            return der(body)[1]
    raise AssertionError("the EC private key carries no public key")


def secret_text(s: dict[str, Any], key: str) -> str:
    return base64.b64decode(s["data"][key]).decode()


def cluster_tls_mode(values: dict[str, Any]) -> str:
    t = values["cluster"]["tls"]
    if t["plaintext"]:
        return "plaintext"
    if t["existingSecret"]["node"] or t["existingSecret"]["router"]:
        return "existing"
    return "certManager" if t["certManager"]["enabled"] else "generated"


def cluster_tls_secret(values: dict[str, Any], role: str) -> str | None:
    mode = cluster_tls_mode(values)
    return {"plaintext": None, "existing": values["cluster"]["tls"]["existingSecret"][role],
            "certManager": f"{RELEASE}-cluster-{role}-cert",
            "generated": f"{RELEASE}-cluster-{role}-tls"}[mode]


def ca_bundle_of(r: Render) -> str:
    """The CA bundle as the pods see it (ConfigMap key cluster-ca.crt)."""
    return r.get("ConfigMap", f"{RELEASE}-config")["data"]["cluster-ca.crt"]


def check_cluster_tls(r: Render) -> None:
    """gRPC mTLS: env, mounts and volumes of nodes and routers, and what the
    chart renders for the mode (generated Secrets, cert-manager Certificates)."""
    mode = cluster_tls_mode(r.values)
    bundle = r.values["cluster"]["tls"]["caBundle"]
    roles = ["node"] + (["router"] if r.values["router"]["enabled"] else [])
    kind = r.values["router"]["kind"]
    workloads = {"node": ("StatefulSet", f"{RELEASE}-node"), "router": (kind, f"{RELEASE}-router")}

    def member(role: str) -> None:
        w = r.get(*workloads[role])
        c = container(w, role)
        env = env_map(c)
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}
        names = {"QUICMQ_CLUSTER_CA", "QUICMQ_CLUSTER_CERT", "QUICMQ_CLUSTER_KEY"}
        expect("QUICMQ_CLUSTER_CA_KEY" not in env, f"{role}: the CA key is handed to a pod")
        if mode == "plaintext":
            eq(env.get("QUICMQ_CLUSTER_PLAINTEXT", {}).get("value"), "true", f"{role} QUICMQ_CLUSTER_PLAINTEXT")
            expect(not names & set(env), f"{role}: cluster TLS files with plaintext")
            expect("cluster-tls" not in vols and "cluster-tls" not in mounts, f"{role}: cluster-tls volume with plaintext")
            return
        expect("QUICMQ_CLUSTER_PLAINTEXT" not in env, f"{role}: plaintext set with TLS")
        for var, path in [("QUICMQ_CLUSTER_CA", "ca.crt"), ("QUICMQ_CLUSTER_CERT", "tls.crt"),
                          ("QUICMQ_CLUSTER_KEY", "tls.key")]:
            eq(env[var].get("value"), f"{CLUSTER_TLS_DIR}/{path}", var)
        eq(mounts["cluster-tls"]["mountPath"], CLUSTER_TLS_DIR, f"{role} cluster-tls mount")
        expect(mounts["cluster-tls"].get("readOnly") is True, f"{role}: cluster-tls mount must be read-only")
        sources = vols["cluster-tls"]["projected"]["sources"]
        secrets = [x["secret"] for x in sources if "secret" in x]
        maps = [x["configMap"] for x in sources if "configMap" in x]
        eq(len(secrets), 1, f"{role}: Secrets in the cluster-tls volume")
        eq(secrets[0]["name"], cluster_tls_secret(r.values, role), f"{role} cluster-tls Secret")
        files = {i["path"]: ("secret", i["key"]) for i in secrets[0]["items"]}
        for m in maps:
            eq(m["name"], f"{RELEASE}-config", f"{role}: CA bundle ConfigMap")
            files.update({i["path"]: ("configMap", i["key"]) for i in m["items"]})
        ca_from = ("configMap", "cluster-ca.crt") if bundle else ("secret", "ca.crt")
        eq(files, {"tls.crt": ("secret", "tls.crt"), "tls.key": ("secret", "tls.key"), "ca.crt": ca_from},
           f"{role} cluster-tls files")
        if bundle:
            cm = r.get("ConfigMap", f"{RELEASE}-config")
            eq(cm["data"]["cluster-ca.crt"].strip(), bundle.strip(), "CA bundle in the ConfigMap")

    def generated() -> None:
        tls_secrets = [d for d in r.all("Secret") if d["metadata"]["name"].startswith(f"{RELEASE}-cluster-")]
        certs = [d for d in r.all("Certificate") if d["metadata"]["name"].startswith(f"{RELEASE}-cluster-")]
        if mode != "generated":
            eq(tls_secrets, [], f"cluster TLS Secrets rendered in mode {mode}")
            if mode != "certManager":
                eq(certs, [], f"cluster Certificates rendered in mode {mode}")
            return
        eq(certs, [], "cluster Certificates with the generated CA")
        eq(sorted(d["metadata"]["name"] for d in tls_secrets),
           sorted([f"{RELEASE}-cluster-ca"] + [f"{RELEASE}-cluster-{x}-tls" for x in roles]),
           "generated cluster TLS Secrets")
        for d in tls_secrets:
            eq(d["type"], "kubernetes.io/tls", f"{d['metadata']['name']} type")
            eq(d["metadata"]["annotations"].get("helm.sh/resource-policy"), "keep",
               f"{d['metadata']['name']} keep policy")
        days = r.values["cluster"]["tls"]["generated"]["validityDays"]
        ca_secret = r.get("Secret", f"{RELEASE}-cluster-ca")
        eq(sorted(ca_secret["data"]), ["tls.crt", "tls.key"], "CA Secret keys")
        ca = Cert(pem_blocks(secret_text(ca_secret, "tls.crt"), "CERTIFICATE")[0])
        expect(ca.is_ca, "the generated CA is not a CA (basicConstraints)")
        eq(ca.issuer, ca.subject, "the generated CA is self-issued")
        eq((ca.not_after - ca.not_before).days, days, "CA validity (days)")
        eq(ec_public_key(pem_blocks(secret_text(ca_secret, "tls.key"), "EC PRIVATE KEY")[0]), ca.public_key,
           "CA key matches the CA certificate")
        for role in roles:
            s = r.get("Secret", f"{RELEASE}-cluster-{role}-tls")
            eq(sorted(s["data"]), ["ca.crt", "tls.crt", "tls.key"], f"{role} Secret keys")
            eq(s["data"]["ca.crt"], ca_secret["data"]["tls.crt"], f"{role} ca.crt is the cluster CA")
            leaf = Cert(pem_blocks(secret_text(s, "tls.crt"), "CERTIFICATE")[0])
            eq(leaf.dns_names, [f"quicmq-{role}"], f"{role} certificate DNS names")
            expect(not leaf.is_ca, f"the {role} certificate is a CA")
            need = {SERVER_AUTH, CLIENT_AUTH} if role == "node" else {CLIENT_AUTH}
            expect(need <= leaf.ekus, f"{role} certificate lacks extended key usages {need - leaf.ekus}")
            eq(leaf.issuer, ca.subject, f"{role} certificate issuer")
            eq(leaf.authority_key_id, ca.key_id, f"{role} certificate authority key ID")
            eq((leaf.not_after - leaf.not_before).days, days, f"{role} certificate validity (days)")
            eq(ec_public_key(pem_blocks(secret_text(s, "tls.key"), "EC PRIVATE KEY")[0]), leaf.public_key,
               f"{role} key matches its certificate")

    def cert_manager() -> None:
        certs = {d["metadata"]["name"]: d for d in r.all("Certificate")
                 if d["metadata"]["name"].startswith(f"{RELEASE}-cluster-")}
        if mode != "certManager":
            return
        cm = r.values["cluster"]["tls"]["certManager"]
        eq(sorted(certs), sorted(f"{RELEASE}-cluster-{x}" for x in roles), "cluster Certificates")
        for role in roles:
            spec = certs[f"{RELEASE}-cluster-{role}"]["spec"]
            eq(certs[f"{RELEASE}-cluster-{role}"]["apiVersion"], CRD_KINDS["Certificate"], "apiVersion")
            eq(spec["secretName"], cluster_tls_secret(r.values, role), f"{role} Certificate secretName")
            eq(spec["dnsNames"], [f"quicmq-{role}"], f"{role} Certificate dnsNames")
            usages = {"client auth", "digital signature", "key encipherment"}
            if role == "node":
                usages.add("server auth")
            eq(set(spec["usages"]), usages, f"{role} Certificate usages")
            eq({k: spec["issuerRef"][k] for k in ("name", "kind", "group")},
               {k: cm["issuerRef"][k] for k in ("name", "kind", "group")}, f"{role} issuerRef")
            eq((spec["duration"], spec["renewBefore"]), (cm["duration"], cm["renewBefore"]), f"{role} lifetime")
            eq(spec["privateKey"]["rotationPolicy"], "Always", f"{role} key rotation")

    for role in roles:
        check(f"{r.scenario}: {role} cluster mTLS ({mode})", lambda role=role: member(role))
    check(f"{r.scenario}: generated cluster CA and certificates", generated)
    check(f"{r.scenario}: cluster cert-manager Certificates", cert_manager)


def check_common(r: Render) -> None:
    def references() -> None:
        # Every Secret/ConfigMap a pod refers to is rendered or declared external.
        external = {r.values["clusterKeys"]["existingSecret"], r.values["tls"]["existingSecret"],
                    r.values["auth"]["passwordFileSecret"], r.values["auth"]["clientCaSecret"],
                    *r.values["cluster"]["tls"]["existingSecret"].values()}
        # Secrets cert-manager writes.
        external |= {c["spec"]["secretName"] for c in r.all("Certificate")}
        for w in r.all("StatefulSet") + r.all("Deployment") + r.all("DaemonSet"):
            pod = w["spec"]["template"]["spec"]
            for v in pod.get("volumes", []):
                sources = v.get("projected", {}).get("sources", [v])
                for src in sources:
                    if "configMap" in src:
                        n = src["configMap"]["name"]
                        expect(r.has("ConfigMap", n), f"missing ConfigMap {n}")
                        for item in src["configMap"].get("items", []):
                            expect(item["key"] in r.get("ConfigMap", n)["data"], f"{n} lacks {item['key']}")
                    if "secret" in src:
                        n = src["secret"].get("secretName") or src["secret"]["name"]
                        expect(r.has("Secret", n) or n in external, f"missing Secret {n}")
                        if r.has("Secret", n):
                            for item in src["secret"].get("items", []):
                                expect(item["key"] in r.get("Secret", n)["data"], f"{n} lacks {item['key']}")
            for c in pod["containers"]:
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        n = ref["name"]
                        expect(r.has("Secret", n) or n in external, f"missing Secret {n}")
                        if r.has("Secret", n) and not ref.get("optional"):
                            expect(ref["key"] in r.get("Secret", n)["data"], f"{n} lacks {ref['key']}")

    def generated_keys() -> None:
        if r.values["clusterKeys"]["existingSecret"]:
            expect(not r.has("Secret", f"{RELEASE}-keys"), "keys Secret rendered with existingSecret")
            return
        s = r.get("Secret", f"{RELEASE}-keys")
        eq(s["metadata"]["annotations"].get("helm.sh/resource-policy"), "keep", "keep policy")
        expected = [("reset-key", 64), ("token-key", 64)]
        if r.values["clusterKeys"]["generateQuicLbKey"]:
            expected.append(("quic-lb-key", 32))
        eq(sorted(s["data"]), sorted(k for k, _ in expected), "generated keys")
        for key, length in expected:
            raw = base64.b64decode(s["data"][key]).decode()
            expect(re.fullmatch(f"[0-9a-f]{{{length}}}", raw), f"{key} is not {length} hex digits")

    def emitted_metrics() -> set[str]:
        repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
        names: set[str] = set()
        for crate in ("node", "router", "raft"):
            for dirpath, _, files in os.walk(os.path.join(repo, crate, "src")):
                for f in files:
                    if f.endswith(".rs"):
                        with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                            names.update(re.findall(r'"(quicmq_[a-z_]+)"', fh.read()))
        return names

    def dashboard() -> None:
        if not r.values["metrics"]["dashboard"]["enabled"]:
            return
        cm = r.get("ConfigMap", f"{RELEASE}-dashboard")
        eq(cm["metadata"]["labels"].get("grafana_dashboard"), "1", "dashboard label")
        dash = json.loads(cm["data"]["quicmq.json"])
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        expect(len(exprs) >= 10, "too few dashboard queries")
        for metric in ("quicmq_connections", "quicmq_messages_published_total",
                       "quicmq_packets_sent_total", "quicmq_router_forwarded_packets_total",
                       "quicmq_raft_term", "quicmq_raft_leader_id", "quicmq_raft_applied_index"):
            expect(any(metric in e for e in exprs), f"no panel queries {metric}")
        # Every metric a panel queries is one the node, router or raft
        # crates record (names appear as string literals in their sources).
        emitted = emitted_metrics()
        for e in exprs:
            for name in re.findall(r"quicmq_[a-z_]+", e):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                expect(name in emitted or base in emitted,
                       f"dashboard queries {name}, which no crate records")
        expect(all("quicmq_" in e for e in exprs), "a panel query names no quicmq metric")
        expect(all(e.count("(") == e.count(")") for e in exprs), "unbalanced parentheses in a query")
        ids = [p["id"] for p in dash["panels"]]
        eq(len(ids), len(set(ids)), "unique panel ids")

    def service_monitors() -> None:
        sms = r.all("ServiceMonitor")
        if not r.values["metrics"]["serviceMonitor"]["enabled"]:
            eq(sms, [], "ServiceMonitors while disabled")
            return
        expected = 2 if r.values["router"]["enabled"] else 1
        eq(len(sms), expected, "ServiceMonitor count")
        services = r.all("Service")
        for sm in sms:
            eq(sm["apiVersion"], CRD_KINDS["ServiceMonitor"], "ServiceMonitor apiVersion")
            sel = sm["spec"]["selector"]["matchLabels"]
            targets = [s for s in services if matches(sel, s["metadata"].get("labels", {}))]
            eq(len(targets), 1, f"{sm['metadata']['name']} selects one Service")
            ep = sm["spec"]["endpoints"][0]
            eq((ep["port"], ep["path"]), ("admin", "/metrics"), "scrape endpoint")
            expect("admin" in svc_ports(targets[0]), "scraped Service has no admin port")

    def certificate() -> None:
        certs = [c for c in r.all("Certificate") if c["metadata"]["name"] == RELEASE]
        if not r.values["tls"]["certManager"]["enabled"]:
            eq(certs, [], "listener Certificate while cert-manager is off")
            return
        cert = certs[0]
        eq(cert["apiVersion"], CRD_KINDS["Certificate"], "Certificate apiVersion")
        spec = cert["spec"]
        expect(spec["issuerRef"]["name"], "issuerRef.name")
        internal = f"*.{RELEASE}-node-headless.{NAMESPACE}.svc.cluster.local"
        eq(internal in spec["dnsNames"], r.values["tls"]["certManager"]["includeInternalNames"],
           "in-cluster DNS names present")
        expect(spec["dnsNames"], "a Certificate without DNS names")
        for name in r.values["tls"]["certManager"]["dnsNames"]:
            expect(name in spec["dnsNames"], f"{name} missing")
        sts = r.get("StatefulSet", f"{RELEASE}-node")
        vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
        eq(vols["tls"]["secret"]["secretName"], spec["secretName"], "mounted TLS Secret")

    def notes() -> None:
        if r.values["router"]["enabled"]:
            expect(re.search(r"quicmq sub -h \S+ -p 14567 -t", r.notes), "NOTES lacks quicmq sub over QUIC")
            expect(re.search(r"quicmq pub -h \S+ -p 14567 -t", r.notes), "NOTES lacks quicmq pub over QUIC")
        if r.values["service"]["mqtt"]["enabled"]:
            expect("--transport tcp" in r.notes, "NOTES lacks the TCP example")

    def env_read(crate: str) -> set[str]:
        repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
        names: set[str] = set()
        for dirpath, _, files in os.walk(os.path.join(repo, crate, "src")):
            for f in files:
                if f.endswith(".rs"):
                    with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                        names.update(re.findall(r'env\s*=\s*"(QUICMQ_[A-Z0-9_]+)"', fh.read()))
        return names

    def env_names() -> None:
        # Every QUICMQ_* variable the chart sets is one the binary reads
        # (a clap `env = "..."` in its crate): a misspelt name would be
        # ignored silently, e.g. a node that never sees its cluster CA.
        workloads = [("node", r.get("StatefulSet", f"{RELEASE}-node"), "node")]
        if r.values["router"]["enabled"]:
            workloads.append(("router", r.get(r.values["router"]["kind"], f"{RELEASE}-router"), "router"))
        for name, w, crate in workloads:
            extra = {e["name"] for e in r.values[name]["extraEnv"]}
            c = container(w, name)
            set_here = {e["name"] for e in c.get("env", [])
                        if e["name"].startswith("QUICMQ_") and e["name"] not in extra}
            unread = sorted(set_here - env_read(crate))
            expect(not unread, f"{name} pods set {unread}, which {crate}/src does not read")

    def labels() -> None:
        for d in r.docs:
            lab = d["metadata"].get("labels", {})
            eq(lab.get("app.kubernetes.io/instance"), RELEASE, f"{d['kind']}/{d['metadata']['name']} instance label")
            eq(d["metadata"].get("namespace"), NAMESPACE, f"{d['kind']}/{d['metadata']['name']} namespace")

    for name, fn in [("references", references), ("generated keys", generated_keys),
                     ("dashboard", dashboard), ("ServiceMonitors", service_monitors),
                     ("Certificate", certificate), ("NOTES.txt", notes), ("labels", labels),
                     ("environment variables the binaries read", env_names)]:
        check(f"{r.scenario}: {name}", fn)
    check_cluster_tls(r)


# ---------------------------------------------------------------- main


def main() -> int:
    chart_dir, out_dir, kube_version = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(chart_dir, "values-production.yaml")) as f:
        production = yaml.safe_load(f)

    def lint(values: dict[str, Any] | None, label: str) -> None:
        report = helm.lint(chart_dir, values, strict=True, namespace=NAMESPACE,
                           kube_version=f"v{kube_version}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        expect(not problems, f"helm lint ({label}): {problems}")

    check("helm lint (default values)", lambda: lint(None, "default"))
    check("helm lint (values-production.yaml)", lambda: lint(production, "production"))

    with helm.Chart.load(chart_dir) as chart:
        check("Chart.yaml", lambda: (
            eq(chart.metadata["appVersion"], "0.1.0", "appVersion"),
            eq(chart.values["image"]["repository"], "quicmq", "image.repository"),
            eq(chart.values["image"]["tag"], "", "image.tag (empty = appVersion)"),
        ))

        def schema_rejects(values: dict[str, Any], why: str) -> None:
            try:
                chart.validate_schema(values)
            except helm.HelmError:
                return
            raise AssertionError(f"schema accepted {why}: {values}")

        def schema() -> None:
            chart.validate_schema({})
            chart.validate_schema(production)
            schema_rejects({"cluster": {"voters": 4}}, "4 voters")
            schema_rejects({"cluster": {"voters": "3"}}, "voters as a string")
            schema_rejects({"router": {"kind": "StatefulSet"}}, "a router StatefulSet")
            schema_rejects({"node": {"replicas": "three"}}, "replicas as a string")
            schema_rejects({"node": {"ports": {"grpc": 70000}}}, "port 70000")
            schema_rejects({"node": {"config": {"queue_drop_policy": "drop-all"}}}, "a drop policy")
            schema_rejects({"service": {"quic": {"type": "Ingress"}}}, "a Service type")
            schema_rejects({"typo": True}, "an unknown top-level key")
            schema_rejects({"node": {"replicaz": 3}}, "an unknown node key")
            schema_rejects({"node": {"startOrdinal": 0}}, "node ID 0")
            schema_rejects({"cluster": {"tls": {"existingSecret": {"nodes": "x"}}}}, "a misspelt cluster TLS role")
            schema_rejects({"cluster": {"tls": {"plaintext": "yes"}}}, "plaintext as a string")
            schema_rejects({"cluster": {"tls": {"caBundle": "not a certificate"}}}, "a CA bundle that is no PEM")
            schema_rejects({"cluster": {"tls": {"generated": {"validityDays": 0}}}}, "a zero certificate lifetime")
            schema_rejects({"cluster": {"tls": {"certManager": {"enabled": True, "issuerRef": {"kind": "Vault"}}}}},
                           "an issuer kind")

        check("values.schema.json accepts defaults and production, rejects bad values", schema)

        def render_fails(values: dict[str, Any], why: str) -> None:
            try:
                chart.render(values, name=RELEASE, namespace=NAMESPACE)
            except helm.HelmError as exc:
                expect(why in str(exc), f"unexpected error: {exc}")
                return
            raise AssertionError(f"rendered despite: {why}")

        check("render refuses two TLS sources", lambda: render_fails(
            {"tls": {"existingSecret": "x", "certManager": {"enabled": True, "issuerRef": {"name": "i"}}}},
            "mutually exclusive"))
        check("render refuses cert-manager without an issuer", lambda: render_fails(
            {"tls": {"certManager": {"enabled": True}}}, "issuerRef.name"))
        check("render refuses cluster plaintext with certificates", lambda: render_fails(
            {"cluster": {"tls": {"plaintext": True, "existingSecret": {"node": "n", "router": "r"}}}},
            "cluster.tls.plaintext excludes"))
        check("render refuses two cluster TLS sources", lambda: render_fails(
            {"cluster": {"tls": {"existingSecret": {"node": "n", "router": "r"},
                                 "certManager": {"enabled": True, "issuerRef": {"name": "i"}}}}},
            "mutually exclusive"))
        check("render refuses a node cluster Secret without a router one", lambda: render_fails(
            {"cluster": {"tls": {"existingSecret": {"node": "n"}}}}, "existingSecret.router while routers run"))
        check("render refuses a router cluster Secret alone", lambda: render_fails(
            {"cluster": {"tls": {"existingSecret": {"router": "r"}}}}, "needs cluster.tls.existingSecret.node"))
        check("render refuses cluster cert-manager without an issuer", lambda: render_fails(
            {"cluster": {"tls": {"certManager": {"enabled": True}}}}, "cluster.tls.certManager.issuerRef.name"))

        # Two real CA certificates (the chart's own, from two renders) as the
        # bundle of a CA rotation.
        def generated_ca() -> str:
            r = Render(chart, {})
            return secret_text(r.get("Secret", f"{RELEASE}-cluster-ca"), "tls.crt")
        rotation_bundle = generated_ca() + generated_ca()

        scenarios: list[tuple[str, dict[str, Any], Callable[[Render], None]]] = [
            ("default", {}, lambda r: (
                check_node(r, 3, 3, False), check_router(r, "Deployment", 2, 3))),
            ("production", production, lambda r: (
                check_node(r, 5, 5, True), check_router(r, "Deployment", 3, 5))),
            ("daemonset-dev", {
                "router": {"kind": "DaemonSet", "hostNetwork": True},
                "node": {"persistence": {"enabled": False}, "replicas": 3,
                         "zoneFromPodLabel": True},
                "tls": {"existingSecret": "my-tls"},
                "clusterKeys": {"generateQuicLbKey": False},
                "service": {"mqtt": {"type": "ClusterIP"}},
                "metrics": {"serviceMonitor": {"enabled": True}, "dashboard": {"enabled": False}},
                "cluster": {"quicLb": {"configId": 1, "nonceLen": 10}},
            }, lambda r: (
                check_node(r, 3, 3, False), check_router(r, "DaemonSet", 0, 3),
                check(f"{r.scenario}: QUIC-LB settings reach nodes and routers", lambda: (
                    eq((toml_of(r, "node.toml")["quic_lb_config_id"], toml_of(r, "node.toml")["quic_lb_nonce_len"]),
                       (1, 10), "node QUIC-LB"),
                    eq((toml_of(r, "router.toml")["quic_lb_config_id"], toml_of(r, "router.toml")["quic_lb_nonce_len"]),
                       (1, 10), "router QUIC-LB"),
                    expect("quic-lb-key" not in r.get("Secret", f"{RELEASE}-keys")["data"], "QUIC-LB key generated"),
                    eq(env_map(container(r.get("StatefulSet", f"{RELEASE}-node"), "node"))["QUICMQ_ZONE"]
                       ["valueFrom"]["fieldRef"]["fieldPath"],
                       "metadata.labels['topology.kubernetes.io/zone']", "QUICMQ_ZONE"),
                )))),
            ("cert-manager-private-ca", {
                "tls": {"certManager": {"enabled": True, "issuerRef": {"name": "internal-ca", "kind": "Issuer"}}},
                "cluster": {"id": "test-cluster", "voters": 5, "joinAllPeers": True},
                "node": {"replicas": 7, "startOrdinal": 10},
            }, lambda r: (
                check_node(r, 7, 5, True), check_router(r, "Deployment", 2, 7),
                check(f"{r.scenario}: cluster_id", lambda: eq(toml_of(r, "node.toml")["cluster_id"], "test-cluster", "cluster_id")))),
            ("no-router", {"router": {"enabled": False}, "service": {"mqtt": {"enabled": False}},
                           "node": {"zone": "eu-west-1a"}},
             lambda r: (check_node(r, 3, 3, False), check_router(r, "Deployment", 0, 3),
                        check_auth(r, None, False))),
            ("passwords", {"auth": {"passwordFileSecret": "fleet-passwd"}},
             lambda r: (check_node(r, 3, 3, False), check_auth(r, "fleet-passwd", False))),
            ("open-dev", {"auth": {"allowAnonymous": True}},
             lambda r: check_auth(r, None, True)),
            ("device-certs", {"auth": {"clientCaSecret": "fleet-devices-ca", "requireClientCert": True,
                                       "certIdentity": "san"}},
             lambda r: (check_node(r, 3, 3, False), check_auth(r, None, False))),
            ("cluster-tls-existing", {"cluster": {"tls": {"existingSecret": {
                "node": "fleet-cluster-node", "router": "fleet-cluster-router"}}}},
             lambda r: (check_node(r, 3, 3, False), check_router(r, "Deployment", 2, 3))),
            ("cluster-tls-cert-manager-rotation", {
                "cluster": {"tls": {"certManager": {"enabled": True, "issuerRef": {
                    "name": "quicmq-cluster-ca-2", "kind": "ClusterIssuer"}}, "caBundle": rotation_bundle}},
                "router": {"kind": "DaemonSet"}},
             lambda r: (check_node(r, 3, 3, False), check_router(r, "DaemonSet", 0, 3),
                        check(f"{r.scenario}: both CAs in the bundle", lambda: eq(
                            len(pem_blocks(ca_bundle_of(r), "CERTIFICATE")), 2, "CA certificates in the bundle")))),
            ("cluster-tls-plaintext", {"cluster": {"tls": {"plaintext": True}}},
             lambda r: (check_node(r, 3, 3, False), check_router(r, "Deployment", 2, 3))),
            ("cluster-tls-generated-no-router", {"router": {"enabled": False},
                                                 "cluster": {"tls": {"generated": {"validityDays": 365}}}},
             lambda r: (check_node(r, 3, 3, False), check_router(r, "Deployment", 0, 3))),
        ]
        for scenario, values, run in scenarios:
            try:
                r = Render(chart, values)
            except Exception as exc:  # noqa: BLE001
                check(f"{scenario}: render", lambda exc=exc: (_ for _ in ()).throw(exc))
                continue
            r.scenario = scenario  # type: ignore[attr-defined]
            check(f"{scenario}: render", lambda: None)
            r.write(out_dir, scenario)
            run(r)
            check_common(r)

    print(f"chart checks: {PASSED} passed, {len(FAILED)} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
