"""Pure: the create time of a notification about something that happened on chain.

Chain events (read by the follower, late by the confirmation depth) and the worker's own
reports about mined transactions are dated in one domain: the block's timestamp, with the block
number (mod 1000) as milliseconds and the log index as microseconds. Newest-first history then
follows chain order even when many blocks share one second, and never depends on which process
noticed first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def chain_stamp(block_time: int, block_number: int, log_index: int) -> datetime:
    fraction = timedelta(milliseconds=block_number % 1000, microseconds=min(max(log_index, 0), 999))
    return datetime.fromtimestamp(block_time, UTC) + fraction
