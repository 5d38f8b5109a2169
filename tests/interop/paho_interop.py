#!/usr/bin/env python3
"""Interoperability with Eclipse Paho (Python): a third-party MQTT client
against a real quicmq-node process over TCP.

    python3 tests/interop/paho_interop.py --node target/debug/quicmq-node

Starts its own node (free loopback port, temporary data directory, an ACL
with a deny rule under an allow-all rule), runs every check, prints one line
per check and exits 1 if any failed. `.ci/interop-check` runs it in a venv
with paho-mqtt installed from PyPI.
"""

import argparse
import importlib.metadata
import os
import queue
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

ACL = "deny subscribe all test/nosubscribe\nallow both all #\n"
TIMEOUT = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """A quicmq-node process on a free loopback port; killed on exit."""

    def __init__(self, binary, workdir):
        self.port = free_port()
        acl = os.path.join(workdir, "acl")
        with open(acl, "w") as f:
            f.write(ACL)
        env = dict(os.environ, QUICMQ_ROUTED_ADDR="off", QUICMQ_GRPC_ADDR="127.0.0.1:0")
        self.log = open(os.path.join(workdir, "node.log"), "w")
        self.process = subprocess.Popen(
            [
                binary,
                "--data-dir", os.path.join(workdir, "data"),
                "--quic-addr", "off",
                "--tls-addr", "off",
                "--admin-addr", "off",
                "--tcp-addr", f"127.0.0.1:{self.port}",
                "--allow-anonymous", "true",
                "--acl-file", acl,
                "--log", "warn",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"quicmq-node exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("quicmq-node did not listen within 60 s")

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.log.close()


class Client:
    """A paho client with its messages in a queue."""

    def __init__(self, port, protocol, client_id=None):
        self.messages = queue.Queue()
        self.subacks = queue.Queue()
        self.protocol = protocol
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"paho-{uuid.uuid4().hex[:10]}",
            protocol=protocol,
        )
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_subscribe = lambda _c, _u, mid, codes, _p: self.subacks.put((mid, codes))
        connected = queue.Queue()
        self.client.on_connect = lambda _c, _u, _f, code, _p: connected.put(code)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        code = connected.get(timeout=TIMEOUT)
        if code.is_failure:
            raise AssertionError(f"CONNACK {code}")

    def subscribe(self, topic, qos=1, wait=True, options=None):
        if options is None:
            result, mid = self.client.subscribe(topic, qos=qos)
        else:
            result, mid = self.client.subscribe(topic, options=options)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        if wait:
            return self.suback(mid)
        return mid

    def suback(self, mid):
        deadline = time.monotonic() + TIMEOUT
        while True:
            got, codes = self.subacks.get(timeout=max(0.01, deadline - time.monotonic()))
            if got == mid:
                return codes

    def publish(self, topic, payload, qos=1, retain=False, properties=None):
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(timeout=TIMEOUT)
        assert info.is_published(), f"{topic}: not acknowledged"

    def next_message(self, timeout=TIMEOUT):
        return self.messages.get(timeout=timeout)

    def no_message(self, within):
        try:
            message = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {message.topic}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def check_roundtrip_qos_0_1_2(port, protocol):
    sub = Client(port, protocol)
    pub = Client(port, protocol)
    try:
        topic = f"interop/{uuid.uuid4().hex[:8]}"
        sub.subscribe(topic, qos=2)
        for qos in (0, 1, 2):
            pub.publish(topic, f"q{qos}".encode(), qos=qos)
            message = sub.next_message()
            assert message.payload == f"q{qos}".encode(), message.payload
            assert message.qos == qos, (message.qos, qos)
    finally:
        sub.close()
        pub.close()


def check_subscribe_then_publish(port, protocol, rounds=50):
    """A publish sent right after another client's SUBSCRIBE, before its
    SUBACK arrived, reaches it (the subscription acts at once)."""
    sub = Client(port, protocol)
    pub = Client(port, protocol)
    misses = 0
    try:
        for n in range(rounds):
            topic = f"interop/stp/{uuid.uuid4().hex[:8]}/{n}"
            mid = sub.subscribe(topic, qos=1, wait=False)
            # paho may leave the SUBSCRIBE to its network thread: publish
            # once its bytes are written (as a device would after the
            # call returned), not before.
            deadline = time.monotonic() + TIMEOUT
            while sub.client.want_write() and time.monotonic() < deadline:
                time.sleep(0.0002)
            pub.client.publish(topic, b"now", qos=1)
            try:
                message = sub.next_message(timeout=3)
                assert message.topic == topic, message.topic
            except queue.Empty:
                misses += 1
            sub.suback(mid)
        assert misses == 0, f"{misses} of {rounds} publishes missed their new subscriber"
    finally:
        sub.close()
        pub.close()


def check_hash_under_partial_acl(port, protocol):
    """`#` next to a deny rule is granted and receives all but the denied
    topic (Mosquitto's semantics), retained messages included."""
    pub = Client(port, protocol)
    retained = f"interop/retained/{uuid.uuid4().hex[:8]}"
    pub.publish("test/nosubscribe", b"withheld", qos=1, retain=True)
    pub.publish(retained, b"kept", qos=1, retain=True)
    watcher = Client(port, protocol)
    try:
        codes = watcher.subscribe("#", qos=1)
        code = codes[0]
        granted = code.value if hasattr(code, "value") else code
        assert granted == 1, f"SUBACK {codes}"
        seen = set()
        deadline = time.monotonic() + TIMEOUT
        while retained not in seen and time.monotonic() < deadline:
            seen.add(watcher.next_message().topic)
        assert retained in seen, seen
        for topic in ("test/nosubscribe", "test/open", "other/x"):
            pub.publish(topic, b"m", qos=1)
        got = []
        while "other/x" not in got:
            message = watcher.next_message()
            if message.topic.startswith("interop/"):
                continue
            got.append(message.topic)
        assert "test/nosubscribe" not in got and "test/nosubscribe" not in seen, (got, seen)
        assert got == ["test/open", "other/x"], got
    finally:
        pub.publish("test/nosubscribe", b"", qos=1, retain=True)
        pub.publish(retained, b"", qos=1, retain=True)
        watcher.close()
        pub.close()


def check_denied_exact_subscription(port, protocol):
    client = Client(port, protocol)
    try:
        codes = client.subscribe("test/nosubscribe", qos=1)
        code = codes[0]
        value = code.value if hasattr(code, "value") else code
        expected = 0x87 if protocol == mqtt.MQTTv5 else 0x80
        assert value == expected, f"SUBACK {codes}"
    finally:
        client.close()


def check_v5_request_response_and_no_local(port):
    responder = Client(port, mqtt.MQTTv5)
    requester = Client(port, mqtt.MQTTv5)
    try:
        base = f"interop/rr/{uuid.uuid4().hex[:8]}"
        responder.subscribe(f"{base}/request", qos=1)
        requester.subscribe(f"{base}/response", qos=1)
        # No Local: the requester does not hear its own publishes.
        requester.subscribe(f"{base}/request", options=SubscribeOptions(qos=1, noLocal=True))
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = f"{base}/response"
        properties.CorrelationData = b"corr-1"
        properties.UserProperty = [("k", "v")]
        requester.publish(f"{base}/request", b"ping", qos=1, properties=properties)
        request = responder.next_message()
        assert request.properties.ResponseTopic == f"{base}/response"
        assert request.properties.CorrelationData == b"corr-1"
        assert ("k", "v") in request.properties.UserProperty
        reply = Properties(PacketTypes.PUBLISH)
        reply.CorrelationData = request.properties.CorrelationData
        responder.publish(request.properties.ResponseTopic, b"pong", qos=1, properties=reply)
        response = requester.next_message()
        assert response.topic == f"{base}/response", response.topic
        assert response.payload == b"pong"
        assert response.properties.CorrelationData == b"corr-1"
        requester.no_message(0.5)
    finally:
        responder.close()
        requester.close()


def check_shared_subscription(port):
    group = f"g{uuid.uuid4().hex[:6]}"
    topic = f"interop/shared/{group}"
    members = [Client(port, mqtt.MQTTv5) for _ in range(2)]
    pub = Client(port, mqtt.MQTTv5)
    try:
        for member in members:
            member.subscribe(f"$share/{group}/{topic}", qos=1)
        for n in range(10):
            pub.publish(topic, str(n).encode(), qos=1)
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 10 and time.monotonic() < deadline:
            for member in members:
                try:
                    got.append(member.next_message(timeout=0.1).payload)
                except queue.Empty:
                    pass
        assert sorted(got, key=int) == [str(n).encode() for n in range(10)], got
    finally:
        for member in members:
            member.close()
        pub.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True, help="path of the quicmq-node binary")
    args = parser.parse_args()
    checks = []
    for name, protocol in (("3.1.1", mqtt.MQTTv311), ("5.0", mqtt.MQTTv5)):
        checks += [
            (f"{name}: QoS 0, 1, 2 round trip", lambda p, v=protocol: check_roundtrip_qos_0_1_2(p, v)),
            (f"{name}: publish right after another client's SUBSCRIBE", lambda p, v=protocol: check_subscribe_then_publish(p, v)),
            (f"{name}: # under a partial ACL", lambda p, v=protocol: check_hash_under_partial_acl(p, v)),
            (f"{name}: a denied exact filter is refused", lambda p, v=protocol: check_denied_exact_subscription(p, v)),
        ]
    checks += [
        ("5.0: request/response properties and No Local", check_v5_request_response_and_no_local),
        ("5.0: shared subscription", check_shared_subscription),
    ]
    failed = 0
    with tempfile.TemporaryDirectory() as workdir:
        node = Node(args.node, workdir)
        try:
            for name, check in checks:
                started = time.monotonic()
                try:
                    check(node.port)
                    print(f"ok    {name} ({time.monotonic() - started:.1f} s)")
                except Exception as e:  # every failure is reported, the rest still run
                    failed += 1
                    print(f"FAIL  {name}: {type(e).__name__}: {e}")
        finally:
            node.stop()
            if failed:
                with open(os.path.join(workdir, "node.log")) as log:
                    print("node log:\n" + log.read()[-4000:])
    print(f"paho-mqtt {importlib.metadata.version('paho-mqtt')}: {len(checks) - failed} of {len(checks)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
