"""Pacing model calls to a deployment's quota: what Azure charges a request, and the limiter that spends it."""
