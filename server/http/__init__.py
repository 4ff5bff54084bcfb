"""HTTP plumbing shared by the edges (REST API, pages, signaling WebSocket).

Typed app keys, request authentication and permission decorators, path/body parsing and the
OpenAPI registry. Imports domains and the kernel, never an edge.
"""
