"""a resend is found by content, and exams keep their events' own times

``messages.content_key``: SHA-256 of feed, MSH-3, MSH-4, MSH-10 and the body digest, unique.
A message is a duplicate when its key *and* body match any stored message (before, only
the first message of a key was compared, so a replay re-applied a reused key's older body).
Existing rows get it from their stored columns; where old replays stored the same content
twice, the first row keeps it.

``exams.first_event_time``/``last_event_time`` and ``exam_events.event_time``/``fields``:
the source's time of each event and what it set, so that an event older than the exam's
newest is kept in the history without moving the exam back. Existing events take their
receipt time (the best there is) and no fields.

``ix_messages_original_id``: feed health lists the reused keys (messages linked to the first
message of their key).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BATCH = 5000


def content_key(feed: str, application: str, facility: str, control_id: str, digest: str) -> str:
    """As monitor.feeds.hl7.intake.content_key, frozen here: a migration must not change with the code."""
    text = "\x1f".join((feed, application, facility, control_id, digest))
    return hashlib.sha256(text.encode()).hexdigest()


def upgrade() -> None:
    op.add_column("messages", sa.Column("content_key", sa.String(length=64), nullable=True))
    op.add_column("exams", sa.Column("first_event_time", sa.DateTime(), nullable=True))
    op.add_column("exams", sa.Column("last_event_time", sa.DateTime(), nullable=True))
    op.add_column("exam_events", sa.Column("event_time", sa.DateTime(), nullable=True))
    op.add_column("exam_events", sa.Column("fields", sa.JSON(), nullable=True))
    conn = op.get_bind()
    seen: set[str] = set()
    last = 0
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT id, feed, sender_application, sender_facility, control_id, body_digest"
                " FROM messages WHERE id > :last ORDER BY id LIMIT :n"
            ),
            {"last": last, "n": _BATCH},
        ).all()
        if not rows:
            break
        updates = []
        for row in rows:
            key = content_key(row[1], row[2], row[3], row[4], row[5])
            if key not in seen:
                seen.add(key)
                updates.append({"b_id": row[0], "b_key": key})
        if updates:
            conn.execute(sa.text("UPDATE messages SET content_key = :b_key WHERE id = :b_id"), updates)
        last = rows[-1][0]
    op.create_index("uq_messages_content_key", "messages", ["content_key"], unique=True)
    op.create_index("ix_messages_original_id", "messages", ["original_id"])
    conn.execute(sa.text("UPDATE exam_events SET event_time = recorded_at"))
    conn.execute(
        sa.text(
            "UPDATE exams SET first_event_time = (SELECT min(event_time) FROM exam_events"
            " WHERE exam_events.exam_id = exams.id), last_event_time = (SELECT max(event_time)"
            " FROM exam_events WHERE exam_events.exam_id = exams.id)"
        )
    )


def downgrade() -> None:
    op.drop_index("ix_messages_original_id", table_name="messages")
    op.drop_index("uq_messages_content_key", table_name="messages")
    op.drop_column("exam_events", "fields")
    op.drop_column("exam_events", "event_time")
    op.drop_column("exams", "last_event_time")
    op.drop_column("exams", "first_event_time")
    op.drop_column("messages", "content_key")
