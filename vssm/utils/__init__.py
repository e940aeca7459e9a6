"""Utilities shared by the tools and benchmarks."""
