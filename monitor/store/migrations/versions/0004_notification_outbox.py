"""notification outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('notifications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('dedupe_key', sa.String(length=700), nullable=False),
    sa.Column('audience', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('trial', sa.String(length=64), nullable=False),
    sa.Column('enrolment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('exam_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('finding_key', sa.String(length=400), nullable=False),
    sa.Column('finding_kind', sa.String(length=32), nullable=False),
    sa.Column('thread_key', sa.String(length=400), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('maybe_sent', sa.Boolean(), nullable=False),
    sa.Column('claimed_by', sa.String(length=200), nullable=True),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=200), nullable=False),
    sa.Column('external_ref', sa.JSON(), nullable=True),
    sa.Column('exam_start', sa.DateTime(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['enrolment_id'], ['enrolments.id'], name=op.f('fk_notifications_enrolment_id_enrolments')),
    sa.ForeignKeyConstraint(['exam_id'], ['exams.id'], name=op.f('fk_notifications_exam_id_exams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_notifications_dedupe_key'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_status', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_notifications_address', ['address', 'status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_notifications_thread_key', ['thread_key', 'address'], unique=False)
        batch_op.create_index('ix_notifications_enrolment_id', ['enrolment_id', 'status'], unique=False)
        batch_op.create_index('ix_notifications_exam_id', ['exam_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_exam_id')
        batch_op.drop_index('ix_notifications_enrolment_id')
        batch_op.drop_index('ix_notifications_thread_key')
        batch_op.drop_index('ix_notifications_address')
        batch_op.drop_index('ix_notifications_status')

    op.drop_table('notifications')
