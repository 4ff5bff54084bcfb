"""Which local addresses ICE gathers host candidates on (aioice)."""

from __future__ import annotations

from collections.abc import Sequence

import aioice.ice

from media.adapter.internals import install_lock, originals


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Gather host candidates only on these addresses (127.0.0.1 included if listed).

    Replaces `aioice.ice.get_host_addresses`, which otherwise lists every interface and skips
    127.0.0.1. Process-wide; call before any RTCPeerConnection gathers. An empty list restores
    aioice's default. aioice binds each candidate socket to port 0 (an ephemeral port) and has no
    port-range parameter; see docs/media.md.
    """
    with install_lock:
        if originals.get_host_addresses is None:
            originals.get_host_addresses = aioice.ice.get_host_addresses
        if not addresses:
            aioice.ice.get_host_addresses = originals.get_host_addresses  # type: ignore[assignment]
            return
        wanted = list(addresses)

        def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return [a for a in wanted if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

        aioice.ice.get_host_addresses = get_host_addresses
