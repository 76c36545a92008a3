"""Channel pace shared by replicas

``channel_pace``: per address, the wall-clock time (Unix seconds) before which the next
message to it may not go. Replicas on one PostgreSQL take their slots here, so that three
of them post to one Slack channel no faster than Slack allows, as one would.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_pace",
        sa.Column("address", sa.String(300), primary_key=True),
        sa.Column("next_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("channel_pace")
