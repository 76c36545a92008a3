"""The integration team's message browser and reprocessing

- ``messages.reprocess_of``: a message stored by reprocessing a rejected one points at it
  (the original keeps its row, its outcome and the answer its sender got).
- Indexes for the browser: by control id (MSH-10), by time then id (keyset pages), the
  events a message wrote (the exams it touched; the search by accession, appointment, MRN),
  exams by appointment id alone, and the few messages a sender resent (a partial index:
  without it, finding them meant reading every message).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # In place: a batch copy of messages cannot drop the table exam_events refers to.
        op.execute("ALTER TABLE messages ADD COLUMN reprocess_of INTEGER REFERENCES messages (id)")
    else:
        op.add_column("messages", sa.Column("reprocess_of", sa.BigInteger(), nullable=True))
        op.create_foreign_key(
            "fk_messages_reprocess_of_messages", "messages", "messages", ["reprocess_of"], ["id"]
        )
    op.create_index(
        "ix_messages_reprocess_of", "messages", ["reprocess_of"],
        postgresql_where=sa.text("reprocess_of IS NOT NULL"), sqlite_where=sa.text("reprocess_of IS NOT NULL"),
    )  # fmt: skip
    # A type that never came would otherwise be looked for in every message. (A feed is not
    # indexed: there are one or two, each with a large share; the browser takes only the
    # configured ones. Every index here costs the feed's writer on every message.)
    op.create_index(
        "ix_messages_type", "messages", ["message_type", "received_at", "id"],
        postgresql_ops={"message_type": "varchar_pattern_ops"},  # the family search: LIKE 'SIU^%'
    )  # fmt: skip

    op.create_index("ix_messages_control_id", "messages", ["control_id"])
    op.drop_index("ix_messages_received_at", table_name="messages")
    op.create_index("ix_messages_received_at", "messages", ["received_at", "id"])
    op.create_index("ix_exam_events_message_id", "exam_events", ["message_id"])
    op.create_index(
        "ix_messages_resent", "messages", ["received_at", "id"],
        postgresql_where=sa.text("duplicates > 0"), sqlite_where=sa.text("duplicates > 0"),
    )  # fmt: skip
    op.create_index("ix_exams_external_id", "exams", ["external_id"])


def downgrade() -> None:
    op.drop_index("ix_exams_external_id", table_name="exams")
    op.drop_index("ix_messages_resent", table_name="messages")
    op.drop_index("ix_messages_type", table_name="messages")
    op.drop_index("ix_exam_events_message_id", table_name="exam_events")
    op.drop_index("ix_messages_received_at", table_name="messages")
    op.create_index("ix_messages_received_at", "messages", ["received_at"])
    op.drop_index("ix_messages_control_id", table_name="messages")
    op.drop_index("ix_messages_reprocess_of", table_name="messages")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_messages_reprocess_of_messages", "messages", type_="foreignkey")
        op.drop_column("messages", "reprocess_of")
    # SQLite cannot drop a column that is a foreign key, nor copy messages (exam_events refers
    # to it): the column stays, unused by the older code.
