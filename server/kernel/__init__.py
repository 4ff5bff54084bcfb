"""Kernel: settings, database, errors, crypto and the other building blocks every domain and
edge may import. Imports nothing above it (no domain, no edge)."""
