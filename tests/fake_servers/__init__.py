"""Local servers that speak each provider's wire format, for tests and benchmarks (no network)."""
