"""Issue #14 item 3: the sessions service alone writes session participants; scheduling goes
through server.sessions.participants and never touches the ORM row."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_no_module_outside_the_sessions_domain_uses_the_participant_row() -> None:
    users = [
        str(path.relative_to(ROOT))
        for folder in ("scheduling", "signaling", "web", "server/api", "server/queue")
        for path in (ROOT / folder).rglob("*.py")
        if any(
            "SessionParticipant" in line and not line.lstrip().startswith("#")
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert users == []
