"""The REST API (JSON under /api/) and operational endpoints (/healthz, /readyz, /metrics).
Views are thin: parse with pydantic, check the permission table, call a service, answer."""
