#!/usr/bin/env python3
"""Offline checks of the quicmq chart (run by .ci/chart-check).

Uses Helm's own Go library through helm-python-sdk (`helm_python`): lints the
chart, validates values against values.schema.json, renders it for several
value sets and asserts that the manifests match what the binaries expect
(ports, probes, environment, security context, data volume, ...).

Writes every scenario's manifests to OUT_DIR as `<scenario>.yaml` (core
Kubernetes kinds, for kubernetes-validate --strict) and `<scenario>.crds.yaml`
(CRD kinds: ServiceMonitor, Certificate, checked here structurally).

usage: check_render.py CHART_DIR OUT_DIR KUBE_VERSION
"""

from __future__ import annotations

import base64
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
    "quic_lb_config_id", "quic_lb_nonce_len",
    "max_packet_size", "receive_maximum", "topic_alias_maximum", "max_keep_alive",
    "max_session_expiry", "max_queued_messages", "queue_drop_policy",
    "max_subscriptions", "max_topic_levels", "max_topic_length",
    "max_connections", "max_connections_per_ip", "max_handshake_rate_per_ip",
    "handshake_burst", "max_publish_rate", "publish_burst", "quic_retry_above",
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
        eq(toml["voters"], voters, "voters")
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


def check_common(r: Render) -> None:
    def references() -> None:
        # Every Secret/ConfigMap a pod refers to is rendered or declared external.
        external = {r.values["clusterKeys"]["existingSecret"], r.values["tls"]["existingSecret"],
                    r.values["auth"]["passwordFileSecret"], r.values["auth"]["clientCaSecret"]}
        if r.values["tls"]["certManager"]["enabled"]:
            external.add(r.get("Certificate", RELEASE)["spec"]["secretName"])
        for w in r.all("StatefulSet") + r.all("Deployment") + r.all("DaemonSet"):
            pod = w["spec"]["template"]["spec"]
            for v in pod.get("volumes", []):
                if "configMap" in v:
                    expect(r.has("ConfigMap", v["configMap"]["name"]), f"missing ConfigMap {v}")
                if "secret" in v:
                    n = v["secret"]["secretName"]
                    expect(r.has("Secret", n) or n in external, f"missing Secret {n}")
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
        certs = r.all("Certificate")
        if not r.values["tls"]["certManager"]["enabled"]:
            eq(certs, [], "Certificate while cert-manager is off")
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

    def labels() -> None:
        for d in r.docs:
            lab = d["metadata"].get("labels", {})
            eq(lab.get("app.kubernetes.io/instance"), RELEASE, f"{d['kind']}/{d['metadata']['name']} instance label")
            eq(d["metadata"].get("namespace"), NAMESPACE, f"{d['kind']}/{d['metadata']['name']} namespace")

    for name, fn in [("references", references), ("generated keys", generated_keys),
                     ("dashboard", dashboard), ("ServiceMonitors", service_monitors),
                     ("Certificate", certificate), ("NOTES.txt", notes), ("labels", labels)]:
        check(f"{r.scenario}: {name}", fn)


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
