import os
import stat
from pathlib import Path

import pytest

from server.kernel.settings import Settings, SettingsError, ensure_secret_key


def test_defaults_are_embedded_single_node(tmp_path: Path) -> None:
    s = Settings.from_env({"ONEDOOR_DATA_DIR": str(tmp_path)})
    assert s.redis_url is None
    assert s.effective_database_url == f"sqlite+aiosqlite:///{(tmp_path / 'onedoor.db').resolve()}"


def test_unknown_variable_is_named() -> None:
    with pytest.raises(SettingsError, match="ONEDOOR_DATABSE_URL: unknown setting"):
        Settings.from_env({"ONEDOOR_DATABSE_URL": "x"})


def test_bad_database_url_is_named() -> None:
    with pytest.raises(SettingsError, match="ONEDOOR_DATABASE_URL"):
        Settings.from_env({"ONEDOOR_DATABASE_URL": "mysql://root@db/x"})


def test_bad_port_is_named() -> None:
    with pytest.raises(SettingsError, match="ONEDOOR_PORT"):
        Settings.from_env({"ONEDOOR_PORT": "eighty"})


def test_comma_lists() -> None:
    s = Settings.from_env(
        {
            "ONEDOOR_MEDIA_HOST_ADDRESSES": "127.0.0.1, 10.0.0.5",
            "ONEDOOR_TURN_URLS": "turn:a:3478?transport=udp",
        }
    )
    assert s.media_host_addresses == ["127.0.0.1", "10.0.0.5"]
    assert s.turn_urls == ["turn:a:3478?transport=udp"]


def test_secret_generated_once_with_0600(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data")
    first = ensure_secret_key(s)
    second = ensure_secret_key(s)
    assert first.secret_key is not None and second.secret_key is not None
    assert first.secret_key.get_secret_value() == second.secret_key.get_secret_value()
    mode = stat.S_IMODE(os.stat(tmp_path / "data" / "secret_key").st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "data").st_mode) == 0o700


def test_public_view_hides_secrets() -> None:
    s = Settings.from_env(
        {
            "ONEDOOR_SECRET_KEY": "very-secret-value",
            "ONEDOOR_DATABASE_URL": "postgresql+asyncpg://u:pw123@db/x",
            "ONEDOOR_TURN_SECRET": "turn-secret",
        }
    )
    shown = repr(s.public_view())
    assert "very-secret-value" not in shown
    assert "pw123" not in shown
    assert "turn-secret" not in shown
    assert "very-secret-value" not in repr(s)


def test_queue_thresholds_and_rate_limits_come_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "ONEDOOR_QUEUE_FLAG_AFTER_S": "120",
            "ONEDOOR_QUEUE_CALLBACK_AFTER_S": "900",
            "ONEDOOR_JOIN_RATE_PER_MIN": "10",
            "ONEDOOR_KIOSK_RATE_PER_MIN": "5",
        }
    )
    assert (s.queue_flag_after_s, s.queue_callback_after_s) == (120, 900)
    assert (s.join_rate_per_min, s.kiosk_rate_per_min) == (10, 5)
    with pytest.raises(SettingsError, match=r"ONEDOOR_QUEUE_CALLBACK_AFTER_S: .*FLAG_AFTER_S"):
        Settings.from_env(
            {"ONEDOOR_QUEUE_FLAG_AFTER_S": "600", "ONEDOOR_QUEUE_CALLBACK_AFTER_S": "60"}
        )
    with pytest.raises(SettingsError, match="ONEDOOR_JOIN_RATE_PER_MIN"):
        Settings.from_env({"ONEDOOR_JOIN_RATE_PER_MIN": "0"})


def test_timezone_is_checked_and_named() -> None:
    assert Settings.from_env({}).timezone == "Asia/Shanghai"
    assert Settings.from_env({"ONEDOOR_TIMEZONE": "Asia/Urumqi"}).timezone == "Asia/Urumqi"
    for bad in ("Asia/Shanghia", "Asia", "../etc/passwd", ""):
        with pytest.raises(SettingsError, match=r"ONEDOOR_TIMEZONE: .*unknown time zone"):
            Settings.from_env({"ONEDOOR_TIMEZONE": bad})
