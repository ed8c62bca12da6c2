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
    # +1 µs: a chain fact is never dated exactly at the whole second a request is dated at.
    fraction = timedelta(milliseconds=block_number % 1000, microseconds=min(max(log_index, 0), 998) + 1)
    return datetime.fromtimestamp(block_time, UTC) + fraction


def request_stamp(now: datetime) -> datetime:
    """The create time of a notification the API writes when it accepts a request.

    Block timestamps have whole seconds, so a chain fact of the same second is dated
    `second + fraction`; dating the request at the start of its second keeps it before
    everything that follows from it on chain, in the same newest-first history.
    """
    return now.replace(microsecond=0)
