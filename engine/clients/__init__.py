"""Clients declared in git (clients.yaml): keys as digests, allowed models, limits, budgets."""
