"""Async image jobs: records in the shared state, background runs, idempotent retries."""
