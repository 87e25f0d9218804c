"""A UDP relay with loss, delay and jitter, both ways, for the media tests (this kernel has no
netem). It listens on the address the server announces (e.g. 10.77.0.3, one socket per media
port) and forwards to the server's real address; each client gets its own upstream socket, so
the server sees one source per client as it would without the relay. Loss, delay and jitter can
be changed while it runs (`relay.loss = 0.2`).

Each datagram is dropped with probability `loss`, else delivered after a delay drawn uniformly
from [delay - jitter, delay + jitter] (so a jittered stream is also reordered, as on a real
line)."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class Counts:
    forwarded: int = 0
    dropped: int = 0


@dataclass
class UdpRelay:
    listen_ip: str
    server_ip: str
    ports: list[int]
    loss: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0
    seed: int = 561
    up: Counts = field(default_factory=Counts)  # client -> server
    down: Counts = field(default_factory=Counts)  # server -> client

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="udp-relay", daemon=True)

    # ---- control (from the test's thread)
    def start(self) -> "UdpRelay":
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._open(), self._loop)
        fut.result(timeout=10)
        return self

    def stop(self) -> None:
        def close():
            for t in list(self._transports):
                t.close()
            for up in self._upstream.values():
                self._loop.remove_reader(up.fileno())
                up.close()
            self._loop.stop()
        self._loop.call_soon_threadsafe(close)
        self._thread.join(timeout=10)

    # ---- inside the relay's loop
    async def _open(self) -> None:
        self._transports = []
        self._upstream: dict[tuple, socket.socket] = {}
        for port in self.ports:
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda port=port: _FromClients(self, port), local_addr=(self.listen_ip, port))
            self._transports.append(transport)

    def _from_client(self, listen: asyncio.DatagramTransport, port: int, data: bytes, addr) -> None:
        up = self._upstream.get(addr)
        if up is None:
            # One upstream socket per client: the server sees one source per client.
            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            up.bind((self.listen_ip, 0))
            up.setblocking(False)
            self._upstream[addr] = up
            self._loop.add_reader(up.fileno(), self._from_server, up, listen, addr)
        self._pass(self.up, up.sendto, data, (self.server_ip, port))

    def _from_server(self, up: socket.socket, listen: asyncio.DatagramTransport, client) -> None:
        while True:
            try:
                data = up.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                return
            self._pass(self.down, listen.sendto, data, client)

    def _pass(self, counts: Counts, send, data: bytes, dest) -> None:
        if self.loss > 0 and self._rng.random() < self.loss:
            counts.dropped += 1
            return
        counts.forwarded += 1
        d = self.delay_s + (self._rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0)
        if d <= 0:
            _send(send, data, dest)
        else:
            self._loop.call_later(d, _send, send, data, dest)


def _send(send, data: bytes, dest) -> None:
    try:
        send(data, dest)
    except OSError:
        pass  # a full buffer or a closed socket: a lost datagram, as on a line


class _FromClients(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, port: int):
        self.relay, self.port, self.transport = relay, port, None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.relay._from_client(self.transport, self.port, data, addr)


def add_address(ip: str, dev: str = "hnth0") -> None:
    import subprocess
    subprocess.run(["ip", "addr", "add", f"{ip}/24", "dev", dev], check=True, capture_output=True, timeout=10)


def free_udp_port(ip: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port
