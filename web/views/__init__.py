"""Thin page views: read the request, ask the permission table, call a service, render."""
