"""indexes for the dashboard: findings and occurrences by exam, and the last changes

An exam's page looks up the findings and occurrences about it (it scanned both tables),
and the dashboard's page cache reads the newest ``updated_at`` of findings, occurrences
and notifications on every request.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_findings_exam_id", "findings", "exam_id"),
    ("ix_findings_updated_at", "findings", "updated_at"),
    ("ix_occurrences_exam_id", "occurrences", "exam_id"),
    ("ix_occurrences_updated_at", "occurrences", "updated_at"),
    ("ix_notifications_updated_at", "notifications", "updated_at"),
)


def upgrade() -> None:
    for name, table, column in _INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _column in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
