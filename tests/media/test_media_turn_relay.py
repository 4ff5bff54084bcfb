"""TURN as deployed: a real coturn on loopback (`use-auth-secret`), credentials from
`signaling.tokens.turn_credentials`, and a client that may only use relayed candidates.
It reaches the SFU and its video is forwarded to another participant."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from media.interfaces import PublishGrant, SessionDescription
from media.sfu import SfuMediaNode
from signaling.tokens import turn_credentials
from tests.conftest import IN_CI, free_port
from tests.media.rtc_clients import EventPump, PatternVideoTrack, TestClient, wait_until

pytestmark = pytest.mark.media


class Coturn:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.secret = secrets.token_hex(16)
        self.root = root
        base = 49160 + (self.port % 200) * 4  # a small relay range of our own
        self.args = [
            "turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
            f"--listening-port={self.port}", f"--min-port={base}", f"--max-port={base + 3}",
            "--realm=onedoor.test", "--use-auth-secret", f"--static-auth-secret={self.secret}",
            "--allow-loopback-peers", "--no-multicast-peers", "--no-tls", "--no-dtls", "--no-cli",
            "--fingerprint", f"--userdb={root / 'turndb'}", f"--pidfile={root / 'turn.pid'}",
            f"--log-file={root / 'turn.log'}", "--simple-log",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = subprocess.run(["ss", "-lun"], capture_output=True, text=True).stdout
            if f"127.0.0.1:{self.port} " in out:
                return
            time.sleep(0.05)
        raise RuntimeError("turnserver did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    if shutil.which("turnserver") is None:
        if IN_CI:
            pytest.fail("coturn is missing: `make test` installs it")
        pytest.skip("coturn is not installed")
    server = Coturn(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_relay_only_client_reaches_the_sfu_through_coturn(
    node: SfuMediaNode, pump: EventPump, coturn: Coturn
) -> None:
    servers = turn_credentials(
        secret=coturn.secret.encode(), identity="guest:turn-test", now=datetime.now(UTC),
        ttl_s=600, stun_urls=[], turn_urls=[f"turn:127.0.0.1:{coturn.port}?transport=udp"],
    )  # fmt: skip
    ice = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
           for s in servers]  # fmt: skip
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=ice, iceTransportPolicy=RTCIceTransportPolicy.RELAY)
    )
    watcher = pump.add(TestClient(node, "turn", "watcher", video=False, audio=False))
    try:
        await watcher.join()
        pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        assert " typ relay " in sdp and " typ host " not in sdp  # relay candidates only
        answer = await node.accept_offer(
            room_id="turn", peer_id="relayed", offer=SessionDescription("offer", sdp),
            ice_servers=[], grant=PublishGrant(audio=False),
        )  # fmt: skip
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, answer.type))
        async with asyncio.timeout(20):
            while pc.connectionState != "connected":
                assert pc.connectionState not in ("failed", "closed"), pc.connectionState
                await asyncio.sleep(0.05)
        await wait_until(lambda: watcher.publishers("video", 3) == {"relayed"}, 20,
                         "video relayed through TURN reaches the other participant")  # fmt: skip
    finally:
        await pc.close()
        await watcher.close()
