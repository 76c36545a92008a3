"""Transmittal forms

``submissions.form``: the data transmittal form kept with a submission: what it was
pre-filled with, what the office entered, who completed it and when (NULL: not completed).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("submissions", sa.Column("form", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("form")
