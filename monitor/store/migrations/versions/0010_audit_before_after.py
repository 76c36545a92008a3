"""audit rows say what a change was before and after

``audit_log.before`` and ``audit_log.after``: the state a change found and the state it
left (a finding's review "none" -> "acknowledged"; later an enrolment's anchors, a
protocol version), so the trail answers "what did it say before" without replaying it.
Rows written earlier keep both empty.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("before", sa.Text(), nullable=False, server_default=""))
    op.add_column("audit_log", sa.Column("after", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("audit_log", "after")
    op.drop_column("audit_log", "before")
