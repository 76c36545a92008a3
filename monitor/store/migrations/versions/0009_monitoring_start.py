"""enrolments get a monitoring start

``enrolments.monitored_from``: the day the office started watching the subject. A window
that closed before it is ``before_monitoring`` (no finding, no alert) unless an exam is on
record for it: importing a site's existing subjects no longer raises a "missed" for every
visit that happened before the monitor existed. Existing enrolments take the day they were
added (``created_at``, UTC).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("enrolments", sa.Column("monitored_from", sa.Date(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("UPDATE enrolments SET monitored_from = CAST(created_at AS DATE)")
    else:
        op.execute("UPDATE enrolments SET monitored_from = date(created_at)")


def downgrade() -> None:
    op.drop_column("enrolments", "monitored_from")
