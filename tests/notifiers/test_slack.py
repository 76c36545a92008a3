"""Slack through slack-sdk against a local Slack-like server (``slack_server.FakeSlack``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from monitor.render import Renderer
from notifiers import Delivery, MessageKind, NotifierError, PhiPolicy
from notifiers.compose import message_context
from notifiers.slack import METADATA_EVENT, SlackNotifier
from notifiers.slack_blocks import SlackLimits, build_message
from rules.model import Severity
from tests.notifiers.conftest import (
    INITIALS,
    MakeNotification,
    alert_content,
    assert_no_phi,
    content_for,
    digest_content,
)
from tests.notifiers.slack_server import FakeSlack, SlackServer

CHANNEL = "C0ONC2101"


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    with SlackServer() as server:
        yield server


@pytest.fixture
def notifier(slack: SlackServer, renderer: Renderer) -> SlackNotifier:
    return SlackNotifier(token=slack.fake.token, renderer=renderer, base_url=slack.base_url)


def test_alert_is_posted_as_block_kit_with_the_dedupe_key_in_its_metadata(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification
) -> None:
    notification = make_notification("slack:#onc-2101-imaging")
    delivery = notifier.send(notification)
    [message] = slack.fake.posted(CHANNEL)
    assert delivery == Delivery("slack", external_id=message["ts"], destination=CHANNEL, status="ok")
    assert message["metadata"] == {
        "event_type": METADATA_EVENT,
        "event_payload": {"dedupe_key": notification.dedupe_key, "thread_key": "exam:42"},
    }
    assert message["blocks"][0]["type"] == "header"
    everything = str(message["blocks"])
    assert "Wrong orderable" in everything and "Ask scheduling to change the order to IMG1234" in everything
    assert "<https://hiro.example.org/exams/42|Open this exam in the dashboard>" in everything
    assert message["text"].startswith("[ONC-2101] Wrong orderable · subject 014")


@pytest.mark.parametrize("kind", list(MessageKind))
def test_a_none_channel_never_sees_mrn_name_or_birth_date(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification, kind: MessageKind
) -> None:
    leaky = "MRN E7730912 QUINCY, JOAN 11/23/1958"
    content = content_for(kind, detail=leaky, change=leaky)
    notification = make_notification("slack:#onc-2101-imaging", kind, content=content)
    delivery = notifier.send(notification)
    notifier.update(replace(notification, content=content), delivery)
    if kind not in (MessageKind.DIGEST, MessageKind.OPERATIONS):
        assert "[withheld]" in slack.fake.posted(CHANNEL)[-1]["text"]  # the change note, scrubbed
    assert slack.fake.raw
    assert_no_phi(slack.fake.all_raw())


def test_a_limited_channel_shows_initials_but_nothing_more(
    slack: SlackServer, renderer: Renderer, make_notification: MakeNotification
) -> None:
    notifier = SlackNotifier(
        token=slack.fake.token, renderer=renderer, base_url=slack.base_url, policy=PhiPolicy.LIMITED
    )
    notifier.send(make_notification("slack:#ct-techs", MessageKind.INSTRUCTIONS))
    raw = slack.fake.all_raw()
    assert INITIALS in raw
    assert_no_phi(raw, initials_allowed=True)


def test_slack_refuses_the_full_policy(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="MRNs or names"):
        SlackNotifier(token="x", renderer=renderer, policy=PhiPolicy.FULL)


def test_later_messages_about_an_exam_are_replies_in_its_thread(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification
) -> None:
    root = notifier.send(make_notification("slack:#onc-2101-imaging", MessageKind.BOOKING, dedupe_key="b1"))
    reminder = make_notification(
        "slack:#onc-2101-imaging", MessageKind.REMINDER, dedupe_key="r1", thread=root
    )
    reply = notifier.send(reminder)
    alert = make_notification("slack:#onc-2101-imaging", dedupe_key="a1", thread=root)  # critical
    notifier.send(alert)
    first, second, third = slack.fake.posted(CHANNEL)
    assert first["thread_ts"] is None
    assert second["thread_ts"] == root.external_id and not second["reply_broadcast"]
    assert (
        third["thread_ts"] == root.external_id and third["reply_broadcast"]
    )  # critical: shown in channel too
    assert reply.destination == CHANNEL and reply.external_id == second["ts"]


def test_update_edits_the_message_and_says_in_its_thread_what_changed(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification
) -> None:
    original = make_notification("slack:#onc-2101-imaging", MessageKind.BOOKING)
    delivery = notifier.send(original)
    moved = alert_content(
        exam_start=datetime(2026, 3, 4, 19, 0, tzinfo=UTC),
        previous_exam_start=datetime(2026, 3, 3, 14, 30, tzinfo=UTC),
    )
    assert notifier.update(replace(original, content=moved, dedupe_key="moved"), delivery) == delivery
    edited, note = slack.fake.posted(CHANNEL)
    assert edited["edited"] and "Wed 4 Mar 2026 14:00 EST" in str(edited["blocks"])
    assert edited["metadata"]["event_payload"]["dedupe_key"] == "moved"
    assert note["thread_ts"] == delivery.external_id
    assert note["text"] == "Updated: moved from Tue 3 Mar 2026 09:30 EST to Wed 4 Mar 2026 14:00 EST"


def test_update_of_a_message_that_is_gone_posts_a_new_one(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification
) -> None:
    notification = make_notification("slack:#onc-2101-imaging")
    stale = Delivery("slack", external_id="1700000000.000001", destination=CHANNEL)
    fresh = notifier.update(notification, stale)
    assert fresh != stale and [m["ts"] for m in slack.fake.posted(CHANNEL)] == [fresh.external_id]


def test_check_before_resend_finds_the_message_posted_before_a_crash(
    slack: SlackServer, renderer: Renderer, make_notification: MakeNotification
) -> None:
    due = datetime.now(UTC)  # real clock: history is searched from due_at, against the server's real ts
    notification = make_notification("slack:#onc-2101-imaging", due_at=due)
    for other in range(3):  # noise: other keys in the same channel
        SlackNotifier(token=slack.fake.token, renderer=renderer, base_url=slack.base_url).send(
            replace(notification, dedupe_key=f"other-{other}")
        )
    posted = SlackNotifier(token=slack.fake.token, renderer=renderer, base_url=slack.base_url).send(
        notification
    )
    # The process dies here; a new one finds the row in `sending` and asks before re-sending.
    after_restart = SlackNotifier(token=slack.fake.token, renderer=renderer, base_url=slack.base_url)
    assert after_restart.find_existing(notification) == replace(posted, status="found")
    assert after_restart.find_existing(replace(notification, dedupe_key="never-sent")) is None
    assert len(slack.fake.posted(CHANNEL)) == 4


def test_check_before_resend_pages_through_history_and_looks_inside_the_thread(
    slack: SlackServer, renderer: Renderer, make_notification: MakeNotification
) -> None:
    notifier = SlackNotifier(token=slack.fake.token, renderer=renderer, base_url=slack.base_url)
    notifier.history_page_size = 2  # type: ignore[misc]
    root = notifier.send(make_notification("slack:#onc-2101-imaging", dedupe_key="root"))
    in_thread = make_notification("slack:#onc-2101-imaging", dedupe_key="reply", thread=root)
    reply = notifier.send(in_thread)
    for n in range(5):
        notifier.send(make_notification("slack:#onc-2101-imaging", dedupe_key=f"later-{n}"))
    assert notifier.find_existing(in_thread) == replace(reply, status="found")
    assert notifier.find_existing(make_notification("slack:#onc-2101-imaging", dedupe_key="root")) is not None
    assert "conversations.replies" in slack.fake.calls and "conversations.list" not in slack.fake.calls


def test_a_short_rate_limit_is_waited_out_once_inside_slack_sdk(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification
) -> None:
    slack.fake.rate_limit(retry_after=0)
    notifier.send(make_notification("slack:#onc-2101-imaging"))
    assert slack.fake.calls == ["chat.postMessage", "chat.postMessage"]
    assert len(slack.fake.posted(CHANNEL)) == 1


def test_a_long_rate_limit_goes_back_to_the_dispatcher_with_retry_after(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification
) -> None:
    slack.fake.rate_limit(retry_after=30)
    started = time.monotonic()
    with pytest.raises(NotifierError) as caught:
        notifier.send(make_notification("slack:#onc-2101-imaging"))
    assert time.monotonic() - started < 5  # not slept on
    error = caught.value
    assert (error.permanent, error.retry_after, error.maybe_sent, error.code) == (
        False,
        30.0,
        False,
        "ratelimited",
    )
    assert slack.fake.posted(CHANNEL) == []


def test_a_second_rate_limit_in_a_row_is_not_waited_again(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification
) -> None:
    slack.fake.rate_limit(retry_after=0, times=2)
    with pytest.raises(NotifierError) as caught:
        notifier.send(make_notification("slack:#onc-2101-imaging"))
    assert not caught.value.permanent and caught.value.retry_after is not None


@pytest.mark.parametrize("error", ["channel_not_found", "invalid_auth", "not_in_channel", "account_inactive"])
def test_errors_that_no_retry_can_fix_are_permanent(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification, error: str
) -> None:
    slack.fake.fail(error)
    with pytest.raises(NotifierError) as caught:
        notifier.send(make_notification("slack:#onc-2101-imaging"))
    assert caught.value.permanent and caught.value.code == error
    assert str(caught.value) == f"slack chat.postMessage: {error}"


def test_a_wrong_token_and_an_unknown_channel_are_permanent(
    slack: SlackServer, renderer: Renderer, make_notification: MakeNotification
) -> None:
    wrong = SlackNotifier(token="xoxb-revoked", renderer=renderer, base_url=slack.base_url)
    with pytest.raises(NotifierError, match="invalid_auth") as caught:
        wrong.send(make_notification("slack:#onc-2101-imaging"))
    assert caught.value.permanent
    right = SlackNotifier(token=slack.fake.token, renderer=renderer, base_url=slack.base_url)
    for call in (right.send, right.find_existing):
        with pytest.raises(NotifierError, match="channel_not_found") as caught:
            call(make_notification("slack:#no-such-channel"))
        assert caught.value.permanent


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_is_transient_and_may_have_posted(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification, status: int
) -> None:
    slack.fake.server_error(status)
    with pytest.raises(NotifierError) as caught:
        notifier.send(make_notification("slack:#onc-2101-imaging"))
    assert not caught.value.permanent and caught.value.maybe_sent


def test_an_unreachable_slack_is_transient_and_nothing_was_sent(
    renderer: Renderer, make_notification: MakeNotification
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    notifier = SlackNotifier(token="x", renderer=renderer, base_url=f"http://127.0.0.1:{port}/api/")
    with pytest.raises(NotifierError) as caught:
        notifier.send(make_notification("slack:#onc-2101-imaging"))
    assert not caught.value.permanent and not caught.value.maybe_sent
    assert caught.value.code == "connection"


def test_long_content_is_cut_to_slacks_limits_and_accepted(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification
) -> None:
    huge = alert_content(
        parameters=tuple(f"Parameter {n}: " + "x" * 500 for n in range(200)),
        detail="d" * 5000,
        timepoint="T" * 300,
        next_step="n" * 50_000,
    )
    notifier.send(make_notification("slack:#ct-techs", MessageKind.INSTRUCTIONS, content=huge))
    notifier.send(make_notification("slack:#ct-techs", content=huge, dedupe_key="alert"))
    notifier.send(make_notification("slack:#ct-techs", MessageKind.DIGEST, content=digest_content(120)))
    posted = slack.fake.posted("C0CTTECHS")
    assert len(posted) == 3
    assert all(len(m["blocks"]) <= SlackLimits.blocks for m in posted)
    assert "…and 73 more: see the dashboard." in str(posted[2]["blocks"])


def test_the_fake_server_rejects_what_slack_rejects(slack: SlackServer, renderer: Renderer) -> None:
    """The limits the server enforces are real: an unchecked payload is refused."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(token=slack.fake.token, base_url=slack.base_url)
    too_many = [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}] * 51
    for kwargs, error in (
        ({"blocks": too_many, "text": "x"}, "invalid_blocks"),
        ({"text": "x" * 40_001}, "msg_too_long"),
        (
            {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], "text": "x"},
            "invalid_blocks",
        ),
        (
            {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}], "text": "x"},
            "invalid_blocks",
        ),
    ):
        with pytest.raises(SlackApiError, match=error):
            client.chat_postMessage(channel="#ct-techs", **kwargs)  # type: ignore[arg-type]


def test_block_builder_marks_severity_and_escapes_mrkdwn(
    renderer: Renderer, make_notification: MakeNotification
) -> None:
    content = alert_content(detail="kV <120> & mAs", severity=Severity.WARNING)
    context = message_context(renderer, make_notification("slack:#x", content=content), PhiPolicy.NONE)
    text, blocks = build_message(renderer, context)
    assert blocks[0]["text"]["text"].startswith(":warning: Wrong orderable")
    assert "kV &lt;120&gt; &amp; mAs" in str(blocks)
    assert len(text) <= SlackLimits.text


def test_error_messages_carry_no_phi(
    slack: SlackServer, notifier: SlackNotifier, make_notification: MakeNotification
) -> None:
    slack.fake.fail("channel_not_found")
    with pytest.raises(NotifierError) as caught:
        notifier.send(make_notification("slack:#onc-2101-imaging"))
    assert_no_phi(str(caught.value) + repr(caught.value))


def test_fake_slack_defaults_are_independent() -> None:
    assert FakeSlack().messages is not FakeSlack().messages
