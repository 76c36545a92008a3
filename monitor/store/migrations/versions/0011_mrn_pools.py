"""MRNs carry their identifier pool

``exams.mrn_pool``: the assigning authority of the identifier the feed chose as the exam's
MRN. ``enrolment_mrns.pool``: the pool the office gave for a subject's MRN ("" for none).
An MRN with a pool claims only exams whose MRN came from that pool or from no named pool:
the same number in another hospital's pool is another patient. Exams stored earlier have no
pool and match by number, as before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("exams", sa.Column("mrn_pool", sa.String(80), nullable=True))
    op.add_column("enrolment_mrns", sa.Column("pool", sa.String(80), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("enrolment_mrns") as batch_op:
        batch_op.drop_column("pool")
    with op.batch_alter_table("exams") as batch_op:
        batch_op.drop_column("mrn_pool")
