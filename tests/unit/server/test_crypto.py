import pytest

from server.kernel.crypto import DecryptionFailed, PiiCipher


def test_round_trip_and_no_plaintext() -> None:
    c = PiiCipher(b"k" * 32)
    token = c.encrypt("13812345678")
    assert "13812345678" not in token
    assert c.decrypt(token) == "13812345678"
    assert c.encrypt("x") != c.encrypt("x")  # random nonce


def test_tampering_is_detected() -> None:
    c = PiiCipher(b"k" * 32)
    token = c.encrypt("张三")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptionFailed):
        c.decrypt(tampered)


def test_rotation_reads_old_rows() -> None:
    old = PiiCipher(b"old-secret")
    token = old.encrypt("杭州市拱墅区")
    new = PiiCipher(b"new-secret", old_secrets=(b"old-secret",))
    assert new.decrypt(token) == "杭州市拱墅区"
    assert new.needs_rotation(token)
    assert not new.needs_rotation(new.encrypt("a"))
    with pytest.raises(DecryptionFailed):
        PiiCipher(b"other").decrypt(token)


def test_lookup_hash_is_keyed_and_normalised() -> None:
    a, b = PiiCipher(b"a"), PiiCipher(b"b")
    assert a.lookup_hash("330105199001011234") == a.lookup_hash(
        " 330105 19900101123４ ".replace("４", "4")
    )
    assert a.lookup_hash("x") != b.lookup_hash("x")
