"""What the evaluation sweeps judged, kept across processes

``judgements``: per enrolment, a fingerprint of what it was last judged from and until when
that judgement holds; ``sweep_state``: the exam event mark, time and settings of the last
sweep. A new process then judges again only what changed (issue 15).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "judgements",
        sa.Column(
            "enrolment_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "sweep_state",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("mark", sa.BigInteger(), nullable=False),
        sa.Column("judged_at", sa.DateTime(), nullable=False),
        sa.Column("full_at", sa.DateTime(), nullable=False),
        sa.Column("settings", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sweep_state")
    op.drop_table("judgements")
