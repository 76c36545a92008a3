"""Core-lab queries

``core_lab_queries``: the questions a core lab sends about an exam it received (a missing
timepoint, poor quality, PHI left in images): when received, the text, when the answer is
due, and the office's answer (who, when). ``submissions.status`` may now also be
``accepted`` (the core lab accepted the images).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "core_lab_queries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column(
            "exam_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.ForeignKey("exams.id"), nullable=False
        ),
        sa.Column("trial", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("text", sa.String(2000), nullable=False),
        sa.Column("answer_due", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("answer", sa.String(2000), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("answered_by", sa.String(120), nullable=False),
        sa.Column("logged_at", sa.DateTime(), nullable=False),
        sa.Column("logged_by", sa.String(120), nullable=False),
    )
    op.create_index("ix_core_lab_queries_exam_id", "core_lab_queries", ["exam_id"])
    op.create_index("ix_core_lab_queries_trial", "core_lab_queries", ["trial", "status"])


def downgrade() -> None:
    op.drop_table("core_lab_queries")
