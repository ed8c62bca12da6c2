"""Persistence: async engine and sessions, tables (models/), audit trail, migrations."""
