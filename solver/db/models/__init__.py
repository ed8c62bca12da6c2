"""All tables, registered on one metadata for Alembic.

`base` comes first: it installs the naming convention before any table is declared. A new
table module must be imported here, or Alembic will not see it (the parity test would then
report the table as missing from the models).
"""

from solver.db.models.audit_log import AuditLog
from solver.db.models.base import NAMING_CONVENTION, metadata
from solver.db.models.instant_close import (
    INSTANT_CLOSE_ACTIVE,
    INSTANT_CLOSE_TERMINAL,
    InstantClose,
    InstantCloseStatus,
)
from solver.db.models.instant_open import INSTANT_OPEN_TERMINAL, InstantOpen, InstantOpenStatus
from solver.db.models.notification import ActionStatus, Notification, StateType
from solver.db.models.quote import Quote

__all__ = [
    "INSTANT_CLOSE_ACTIVE",
    "INSTANT_CLOSE_TERMINAL",
    "INSTANT_OPEN_TERMINAL",
    "NAMING_CONVENTION",
    "ActionStatus",
    "AuditLog",
    "InstantClose",
    "InstantCloseStatus",
    "InstantOpen",
    "InstantOpenStatus",
    "Notification",
    "Quote",
    "StateType",
    "metadata",
]
