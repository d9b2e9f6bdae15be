"""Simulated hospital plant room (see issue: field drivers and simulator)."""
