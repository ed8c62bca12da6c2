"""Shared fixtures live in tests/fixtures/*; each module owns one real dependency."""

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.redis",
    "tests.fixtures.chain",
    "tests.fixtures.app",
]
