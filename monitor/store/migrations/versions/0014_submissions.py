"""Core-lab submissions

``submissions``: per research exam of a trial with a core lab, from the day its images
arrived: when the copy is due, what became of it (made, refused by the check, sent, or
recorded by the office with the sponsor's confirmation number), by whom and when.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "submissions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column(
            "exam_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            sa.ForeignKey("exams.id"),
            nullable=False,
            unique=True,
        ),
        sa.Column("trial", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("timepoint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("images_at", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("destination", sa.String(300), nullable=False),
        sa.Column("copy_uids", sa.JSON, nullable=False),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.Column("problems", sa.JSON, nullable=False),
        sa.Column("error", sa.String(500), nullable=False),
        sa.Column("confirmation", sa.String(120), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=True),
        sa.Column("submitted_by", sa.String(120), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_submissions_status", "submissions", ["status", "due_at"])


def downgrade() -> None:
    op.drop_table("submissions")
