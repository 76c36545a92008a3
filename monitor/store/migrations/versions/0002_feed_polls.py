"""feed polls (FHIR poll status for feed health)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feed_polls',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('feed', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('resources', sa.Integer(), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feed_polls'))
    )
    with op.batch_alter_table('feed_polls', schema=None) as batch_op:
        batch_op.create_index('ix_feed_polls_feed', ['feed', 'started_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('feed_polls', schema=None) as batch_op:
        batch_op.drop_index('ix_feed_polls_feed')

    op.drop_table('feed_polls')
