"""Warm workers for the local runner."""
