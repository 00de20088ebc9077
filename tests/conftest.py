"""Shared fixtures. Component-specific fixtures live in tests/fixtures_*.py and are loaded as plugins."""

pytest_plugins = ["tests.fixtures_postgres"]
