"""A userspace link between two interfaces: delay, jitter, Bernoulli loss and blackouts.

This kernel has no `netem`, so `tests/netshape.py` runs this in a middle network namespace of
its own. It reads every frame arriving on one interface through an `AF_PACKET` socket and writes
it, when due, to the other (ARP included: the two sides form one Ethernet segment). Per
direction: loss is drawn at arrival; a frame kept is due after `delay ± jitter`, never before
the frame ahead of it (no reordering). During a blackout every frame is dropped, both ways.

`python netshape_relay.py --offloads-off DEV...` turns off checksum and segmentation offloads on
the interfaces that send towards the relay (see `disable_offloads`).

Run: `python netshape_relay.py IF_A IF_B --up-loss 0.03 --delay-ms 60 --jitter-ms 20
--max-s 120`. "up" is A→B (IF_A faces the shaped participant). Commands on stdin, one a line:
`blackout SECONDS` (starts now), `loss UP DOWN`. Prints `ready` once both sockets are bound
and counters as JSON at exit. Stops by itself after --max-s, at EOF on stdin or on SIGTERM.
"""

from __future__ import annotations

import argparse
import array
import collections
import contextlib
import fcntl
import json
import random
import select
import signal
import socket
import struct
import sys
import threading
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SIOCETHTOOL = 0x8946
# ethtool set commands: tx checksum, scatter-gather, TSO, GSO, GRO
ETHTOOL_OFFLOADS = (0x17, 0x19, 0x1F, 0x24, 0x2C)


def disable_offloads(device: str) -> None:
    """`ethtool -K DEV tx off sg off tso off gso off gro off`, by ioctl (no ethtool here).

    A veth sends UDP with the checksum left to "hardware" (CHECKSUM_PARTIAL): copied by an
    AF_PACKET socket and written to another interface it would arrive with a bad checksum and
    be dropped. Turned off on the interfaces that send towards the relay."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for command in ETHTOOL_OFFLOADS:
            value = array.array("I", [command, 0])
            address, _ = value.buffer_info()
            request = struct.pack("16sP", device.encode(), address).ljust(40, b"\0")
            with contextlib.suppress(OSError):  # not supported here: nothing to turn off
                fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)


class Direction:
    def __init__(self, name: str, loss: float) -> None:
        self.name = name
        self.loss = loss
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.last_due = 0.0
        self.counters = {"in": 0, "lost": 0, "blackout": 0, "out": 0}


def main() -> None:
    if sys.argv[1:2] == ["--offloads-off"]:
        for device in sys.argv[2:]:
            disable_offloads(device)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("if_a")
    parser.add_argument("if_b")
    parser.add_argument("--up-loss", type=float, default=0.0)
    parser.add_argument("--down-loss", type=float, default=0.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--max-s", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    stop_at = time.monotonic() + args.max_s
    state = {"blackout_until": 0.0, "stop": False}
    up, down = Direction("up", args.up_loss), Direction("down", args.down_loss)

    def commands() -> None:
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["blackout"]:
                state["blackout_until"] = time.monotonic() + float(words[1])
            elif words[:1] == ["loss"]:
                up.loss, down.loss = float(words[1]), float(words[2])
        state["stop"] = True

    signal.signal(signal.SIGTERM, lambda *_: state.update(stop=True))
    threading.Thread(target=commands, daemon=True).start()

    sockets = {}
    for name in (args.if_a, args.if_b):
        disable_offloads(name)
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((name, 0))
        s.setblocking(False)
        sockets[name] = s
    sock_a, sock_b = sockets[args.if_a], sockets[args.if_b]
    route = {sock_a.fileno(): (up, sock_b), sock_b.fileno(): (down, sock_a)}
    print("ready", flush=True)

    delay_s, jitter_s = args.delay_ms / 1000, args.jitter_ms / 1000
    while not state["stop"] and time.monotonic() < stop_at:
        now = time.monotonic()
        next_due = min((d.queue[0][0] for d in (up, down) if d.queue), default=now + 0.05)
        readable, _, _ = select.select([sock_a, sock_b], [], [], max(0.0, next_due - now))
        now = time.monotonic()
        for sock in readable:
            direction, _ = route[sock.fileno()]
            while True:
                try:
                    frame, address = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if address[2] == PACKET_OUTGOING:
                    continue  # what this relay (or the kernel) sent out of this interface
                direction.counters["in"] += 1
                if now < state["blackout_until"]:
                    direction.counters["blackout"] += 1
                    continue
                if rng.random() < direction.loss:
                    direction.counters["lost"] += 1
                    continue
                due = now + max(0.0, delay_s + rng.uniform(-jitter_s, jitter_s))
                due = max(due, direction.last_due)  # no reordering
                direction.last_due = due
                direction.queue.append((due, frame))
        for direction in (up, down):
            _, out = route[(sock_a if direction is up else sock_b).fileno()]
            while direction.queue and direction.queue[0][0] <= now:
                _, frame = direction.queue.popleft()
                if now < state["blackout_until"]:
                    direction.counters["blackout"] += 1
                    continue
                try:
                    out.send(frame)
                    direction.counters["out"] += 1
                except OSError:  # tbf queue full (ENOBUFS): the link's buffer overflowed
                    direction.counters["lost"] += 1
    print(json.dumps({"up": up.counters, "down": down.counters}), flush=True)


if __name__ == "__main__":
    main()
