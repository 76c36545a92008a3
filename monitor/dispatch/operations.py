"""The operations check: is a feed quiet, are rejections rising, is the outbox backed up?

Run by the scheduler's ``operations`` job on the leading replica every ``[operations]
check_every_seconds``. Each condition is measured in the store (:mod:`monitor.store.operations`)
and compared with its open episode: a condition that holds and has no open episode is
raised (a message to every ``[operations] channels`` address), one whose episode is open
and no longer holds recovers (one message saying so). The messages go through the outbox
like every other one, with kind ``operations``: feeds, counts and times, no patient data.

A feed is quiet when it has sent nothing for ``quiet_minutes`` within its watched hours on
the site's open days; the quiet time is counted from the start of today's watched hours at
the earliest, so a night without messages is not an alert at 07:01.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from monitor.config import FeedWatch, Settings
from monitor.feeds.mllp.server import SenderPresence
from monitor.store.operations import (
    clear_alert,
    last_message_at,
    open_episodes,
    raise_alert,
    rejections_since,
    unsent_due_before,
)

__all__ = ["Condition", "OperationsCheck", "SenderWatch", "check_operations", "watched_feeds"]

# The conditions check_operations measures (sender_gone is SenderWatch's, on each replica).
_MEASURED = frozenset({"quiet_feed", "rejections", "outbox_backlog"})

log = logging.getLogger("monitor.operations")


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition that holds now: its key (``condition|feed``) and what its message says."""

    condition: str
    feed: str
    summary: str
    detail: str

    @property
    def key(self) -> str:
        return f"{self.condition}|{self.feed}"


@dataclass(slots=True)
class OperationsCheck:
    raised: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    holding: list[str] = field(default_factory=list)  # every condition that holds now


def watched_feeds(settings: Settings) -> dict[str, FeedWatch]:
    """The feeds watched for silence: the HL7 feed (when its listener runs), the FHIR feed
    (when enabled), each with its ``[operations.feeds.NAME]`` settings or the defaults, and
    any other feed named there."""
    named = dict(settings.operations.feeds)
    feeds: dict[str, FeedWatch] = {}
    if settings.mllp.enabled:
        feeds[settings.hl7.feed] = named.get(settings.hl7.feed, FeedWatch())
    if settings.fhir.enabled:
        feeds[settings.fhir.feed] = named.get(settings.fhir.feed, FeedWatch())
    for name, watch in named.items():
        feeds.setdefault(name, watch)
    return {name: watch for name, watch in feeds.items() if watch.quiet_minutes > 0}


_LOOK_BACK = timedelta(days=7)  # how far back a feed's last message is looked for
# A feed watched all day: its quiet time counts from its last message alone.
_ALWAYS = datetime(2000, 1, 1, tzinfo=UTC)


def _watch_started(watch: FeedWatch, now: datetime, settings: Settings) -> datetime | None:
    """The earliest instant ``watch``'s quiet time counts from at ``now``: today's start of
    the watched hours (site zone, open days), :data:`_ALWAYS` for a feed watched all day;
    None when ``now`` is outside the watched hours."""
    if not watch.hours:
        return _ALWAYS
    zone = ZoneInfo(settings.site.timezone)
    local = now.astimezone(zone)
    closures = settings.site.closures()
    if local.weekday() in closures.weekdays or local.date() in closures.days:
        return None
    first, last = watch.hours.split("-")
    start = time.fromisoformat(first)
    within = local.time() >= start and (last == "24:00" or local.time() < time.fromisoformat(last))
    return datetime.combine(local.date(), start, tzinfo=zone) if within else None


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes} minutes" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"


def _conditions(engine: Engine, settings: Settings, now: datetime) -> tuple[list[Condition], set[str]]:
    """The conditions that hold at ``now``, and the keys not measured now (a feed outside its
    watched hours: its open episode neither recovers nor is raised again)."""
    ops = settings.operations
    zone = ZoneInfo(settings.site.timezone)
    held: list[Condition] = []
    unmeasured: set[str] = set()
    with engine.connect() as conn:
        for feed, watch in sorted(watched_feeds(settings).items()):
            began = _watch_started(watch, now, settings)
            if began is None:
                unmeasured.add(f"quiet_feed|{feed}")
                continue
            last = last_message_at(conn, feed, now - _LOOK_BACK)
            quiet_since = max(last, began) if last is not None else began
            if now - quiet_since < timedelta(minutes=watch.quiet_minutes):
                continue
            if last is None and began is _ALWAYS:
                summary, heard = f"Feed {feed} has sent nothing for a week or more", "none this week"
            else:
                summary = f"Feed {feed} has sent nothing for {_minutes(now - quiet_since)}"
                heard = (
                    f"the last arrived {last.astimezone(zone):%a %d %b %H:%M}" if last else "none has arrived"
                )
            detail = (
                f"Expected at least one message every {watch.quiet_minutes} minutes"
                f"{' from ' + watch.hours.replace('-', ' to ') + ' on open days' if watch.hours else ''}; "
                f"{heard}. Check the sending engine's queue and its connection to us."
            )
            held.append(Condition("quiet_feed", feed, summary, detail))
        if ops.rejections_per_hour:
            for feed, count in sorted(rejections_since(conn, now - timedelta(hours=1)).items()):
                if count >= ops.rejections_per_hour:
                    held.append(Condition(
                        "rejections", feed,
                        f"Feed {feed}: {count} messages answered AE or AR in the last hour",
                        f"The threshold is {ops.rejections_per_hour} an hour. The message browser lists "
                        "them with their reasons (outcome rejected); reprocess them after the fix.",
                    ))  # fmt: skip
        if ops.outbox_backlog:
            count = unsent_due_before(conn, now - timedelta(minutes=ops.outbox_backlog_minutes))
            if count >= ops.outbox_backlog:
                held.append(Condition(
                    "outbox_backlog", "",
                    f"{count} messages due {ops.outbox_backlog_minutes} minutes ago or more are not sent",
                    "Check the channels on the Feed health page (Outbox): a channel down, a token "
                    "revoked, a rate limit, or no dispatcher running.",
                ))  # fmt: skip
    return held, unmeasured


def check_operations(engine: Engine, settings: Settings, now: datetime) -> OperationsCheck:
    """Raise what holds and was not open; recover what was open and no longer holds."""
    channels = settings.operations.channels
    conditions, unmeasured = _conditions(engine, settings, now)
    holding = {condition.key: condition for condition in conditions}
    result = OperationsCheck(holding=sorted(holding))
    with engine.begin() as conn:
        episodes = open_episodes(conn)
        for key, condition in holding.items():
            if key not in episodes and raise_alert(
                conn, key, condition.condition, condition.feed, condition.summary, condition.detail,
                now, channels,
            ):  # fmt: skip
                result.raised.append(key)
        for key, episode in episodes.items():
            if episode.condition in _MEASURED and key not in holding and key not in unmeasured:
                recovery = _recovery_of(episode.condition, episode.feed)
                if clear_alert(conn, key, recovery, now, channels):
                    result.recovered.append(key)
    for key in result.raised:
        log.warning("operations: %s", holding[key].summary)
    for key in result.recovered:
        log.info("operations: %s recovered", key)
    return result


def _recovery_of(condition: str, feed: str) -> str:  # the conditions of _MEASURED
    if condition == "quiet_feed":
        return f"Feed {feed} is sending again"
    if condition == "rejections":
        return f"Feed {feed}: rejections are back under the threshold"
    return "The outbox has caught up"


class SenderWatch:
    """A sending system that dropped its connections and has not come back.

    Runs on every replica (each knows the senders of its own listener), from the listener's
    :meth:`monitor.feeds.mllp.server.MllpServer.senders`. A departure is raised once, after
    ``[operations] sender_gone_minutes``; the sender's return clears it, on whichever
    replica it reconnects to. Only hosts that delivered a message count."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._raised: dict[str, float] = {}  # host -> the departure (left_at) already raised

    def check(self, senders: Sequence[SenderPresence], now: datetime) -> OperationsCheck:
        ops = self.settings.operations
        result = OperationsCheck()
        if not ops.sender_gone_minutes:
            return result
        zone = ZoneInfo(self.settings.site.timezone)
        feed = self.settings.hl7.feed
        with self.engine.begin() as conn:
            episodes = open_episodes(conn)
            for sender in senders:
                key = f"sender_gone|{sender.host}"
                if sender.left_at is None:
                    if key in episodes and clear_alert(
                        conn, key, f"Sender {sender.host} is connected again", now, ops.channels
                    ):
                        result.recovered.append(key)
                    continue
                gone = now.timestamp() - sender.left_at
                if gone < ops.sender_gone_minutes * 60 or self._raised.get(sender.host) == sender.left_at:
                    continue
                left = datetime.fromtimestamp(sender.left_at, UTC).astimezone(zone)
                summary = (
                    f"Sender {sender.host} ({feed}) disconnected at {left:%H:%M} and has not come back "
                    f"({_minutes(timedelta(seconds=gone))})"
                )
                detail = (
                    "Its last connection closed and no new one has opened. Check the sending "
                    "engine's outbound connection (stopped, or failing to reach us) and the network."
                )
                self._raised[sender.host] = sender.left_at
                result.holding.append(key)
                if key not in episodes and raise_alert(
                    conn, key, "sender_gone", sender.host, summary, detail, now, ops.channels
                ):
                    result.raised.append(key)
        for key in result.raised:
            log.warning("operations: %s", key)
        return result
