"""100,000 random and mutated packets against a `svcnet dns` process: it stays up, every reply
it sends parses as DNS, and it still answers correctly afterwards."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
from test_dns_records import OBJECTS

PACKETS = 100_000
BATCH = 200

NAMES = [
    "svc1.testns.svc.cluster.local.",
    "_http._tcp.hdls1.testns.svc.cluster.local.",
    "hdls1.testns.svc.cluster.local.",
    "external.testns.svc.cluster.local.",
    "1.0.0.10.in-addr.arpa.",
    "dns-version.cluster.local.",
    "cluster.local.",
    "example.com.",
]
TYPES = ["A", "AAAA", "SRV", "PTR", "TXT", "SOA", "NS", "CNAME", "ANY", "AXFR", "MX", "OPT", "TSIG"]


def _seeds() -> list[bytes]:
    seeds = []
    for name in NAMES:
        for qtype in TYPES:
            seeds.append(dns.message.make_query(name, qtype).to_wire())
            seeds.append(
                dns.message.make_query(name, qtype, use_edns=0, payload=4096, want_dnssec=True).to_wire()
            )
    return seeds


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    kind = rng.randrange(6)
    if kind == 0:  # flip bytes anywhere
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:  # cut short
        del data[rng.randrange(len(data)) :]
    elif kind == 2:  # append junk
        data += rng.randbytes(rng.randint(1, 64))
    elif kind == 3:  # absurd section counts
        struct.pack_into("!HHHH", data, 4, *(rng.choice((0, 1, 2, 0xFFFF)) for _ in range(4)))
    elif kind == 4:  # flags and opcode
        data[2] = rng.randrange(256)
        data[3] = rng.randrange(256)
    else:  # labels: lengths and compression pointers
        at = rng.randrange(12, len(data))
        data[at] = rng.choice((0x3F, 0x40, 0xC0, 0xFF, 0x00, rng.randrange(256)))
    return bytes(data)


def _start(tmp: Path) -> tuple[subprocess.Popen[str], int]:
    objects = tmp / "objects.json"
    objects.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": OBJECTS}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "svcnet",
            "dns",
            "-f",
            str(objects),
            "--listen",
            "127.0.0.1:0",
            "--zone",
            "cluster.local",
            "--zone",
            "0.10.in-addr.arpa",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving on" in line, line
    port = int(line.split()[4].rsplit(":", 1)[1])
    return proc, port


def test_fuzz_100k_packets(tmp_path: Path) -> None:
    proc, port = _start(tmp_path)
    try:
        rng = random.Random(9)
        seeds = _seeds()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.setblocking(False)
        replies: list[bytes] = []
        sent = 0

        def drain(wait: float, gap: float = 0.0) -> None:
            """Read replies until none arrives for ``gap`` seconds (the first may take ``wait``)."""
            while select.select([sock], [], [], wait)[0]:
                try:
                    replies.append(sock.recv(65535))
                except BlockingIOError:
                    return
                wait = gap

        while sent < PACKETS:
            for _ in range(BATCH):
                if rng.random() < 0.25:
                    packet = rng.randbytes(rng.randint(0, 512))
                else:
                    packet = _mutate(rng, rng.choice(seeds))
                try:
                    sock.sendto(packet, ("127.0.0.1", port))
                except BlockingIOError:
                    drain(0.01)
                sent += 1
            # Let the server work through the batch (a batch of 200 in flight at once) so the
            # kernel does not drop most of the flood before the server sees it.
            drain(0.05, 0.004)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            before = len(replies)
            drain(0.2)
            if len(replies) == before:
                break
        sock.close()

        print(f"{len(replies)} replies to {sent} packets")
        assert proc.poll() is None, "the server died"
        bad = []
        for reply in replies:
            try:
                dns.message.from_wire(reply)
            except dns.exception.DNSException as e:
                bad.append((reply, e))
        assert not bad, f"{len(bad)} of {len(replies)} replies do not parse, first: {bad[0]}"
        assert len(replies) > PACKETS // 2, f"only {len(replies)} replies to {PACKETS} packets"
        # Still serving, over both transports.
        for tcp in (False, True):
            q = dns.message.make_query("svc1.testns.svc.cluster.local.", "A")
            ask = dns.query.tcp if tcp else dns.query.udp
            reply = ask(q, "127.0.0.1", port=port, timeout=5)
            assert reply.rcode() == dns.rcode.NOERROR and str(reply.answer[0][0]) == "10.0.0.1"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
