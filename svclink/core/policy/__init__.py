"""Policies as immutable values that compute and never sleep: retry, breaker, retry budget."""
