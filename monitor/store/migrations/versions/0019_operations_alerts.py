"""Operations alerts: a feed gone quiet, a rise in rejections, an outbox backlog

One row per condition (``quiet_feed|epic``, ``rejections|epic``, ``outbox_backlog|``): when
the current episode began, what it said, and when it cleared. Raising and clearing are
updates of this row in the transaction that plans their messages, so each episode is
announced once and its recovery once, whichever replica checks.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operations_alerts",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("condition", sa.String(32), nullable=False),
        sa.Column("feed", sa.String(64), nullable=False),
        sa.Column("raised_at", sa.DateTime(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("cleared_at", sa.DateTime(), nullable=True),
        sa.Column("recovery", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("operations_alerts")
