"""The session as evidence (issue #20): a canonical manifest of every file of a session with
SHA-256 and SM3, signed with the deployment's Ed25519 key and optionally timestamped by an
RFC 3161 TSA; the evidence package (ZIP) and its verification; retention of the originals.

    keys.py      the deployment's Ed25519 signing keys (current + previous secrets)
    manifest.py  canonical JSON, file digests, verification of a manifest's files
    tsa.py       RFC 3161 request and verification (rfc3161-client)
    service.py   build/store a session's manifest, the package download (access + audit)
    package.py   the ZIP and `onedoor evidence verify`
    retention.py the periodic job deleting originals past their retention period
"""
