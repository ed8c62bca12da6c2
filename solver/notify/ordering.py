"""Pure: the create time of a notification about something that happened on chain.

Chain events (read by the follower, late by the confirmation depth) and the worker's own
reports about mined transactions are dated in one domain: the block's timestamp, with the block
number (mod 999, from 1) as milliseconds and the log index as microseconds. Newest-first history then
follows chain order even when many blocks share one second, and never depends on which process
noticed first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def chain_stamp(block_time: int, block_number: int, log_index: int) -> datetime:
    # From 1 ms into the second: the first millisecond is where requests are dated (request_stamp).
    fraction = timedelta(milliseconds=1 + block_number % 999, microseconds=min(max(log_index, 0), 999))
    return datetime.fromtimestamp(block_time, UTC) + fraction


def request_stamp(now: datetime) -> datetime:
    """The create time of a notification the API writes when it accepts a request.

    Block timestamps have whole seconds, so a chain fact of the same second is dated from
    `second + 1 ms`; the request is dated within the first millisecond of its second (its place
    in the second scaled down, so requests keep their own order) and so lists before everything
    that follows from it on chain, in the same newest-first history.
    """
    return now.replace(microsecond=now.microsecond // 1000)
