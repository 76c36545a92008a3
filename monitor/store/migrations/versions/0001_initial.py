"""messages, exams and exam events

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('feed', sa.String(length=64), nullable=False),
    sa.Column('sender_application', sa.String(length=180), nullable=False),
    sa.Column('sender_facility', sa.String(length=180), nullable=False),
    sa.Column('control_id', sa.String(length=199), nullable=False),
    sa.Column('message_type', sa.String(length=40), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('peer', sa.String(length=80), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=True),
    sa.Column('body_digest', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('ack_code', sa.String(length=2), nullable=False),
    sa.Column('error_code', sa.String(length=8), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=600), nullable=True),
    sa.Column('duplicates', sa.Integer(), nullable=False),
    sa.Column('original_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('key_reused', sa.Integer(), nullable=False),
    sa.Column('purged_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['original_id'], ['messages.id'], name=op.f('fk_messages_original_id_messages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_messages_dedupe_key'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_outcome', ['outcome', 'received_at'], unique=False)
        batch_op.create_index('ix_messages_received_at', ['received_at'], unique=False)

    op.create_table('exams',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('external_id', sa.String(length=199), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('last_event', sa.String(length=16), nullable=False),
    sa.Column('status_code', sa.String(length=80), nullable=False),
    sa.Column('mrn', sa.String(length=80), nullable=True),
    sa.Column('patient_ids', sa.JSON(), nullable=False),
    sa.Column('accession', sa.String(length=80), nullable=True),
    sa.Column('order_number', sa.String(length=80), nullable=True),
    sa.Column('procedure_code', sa.String(length=80), nullable=True),
    sa.Column('procedure_text', sa.String(length=250), nullable=True),
    sa.Column('procedure_system', sa.String(length=80), nullable=True),
    sa.Column('modality', sa.String(length=16), nullable=True),
    sa.Column('location', sa.String(length=250), nullable=True),
    sa.Column('resources', sa.JSON(), nullable=False),
    sa.Column('start_at', sa.DateTime(), nullable=True),
    sa.Column('duration_minutes', sa.Integer(), nullable=True),
    sa.Column('comments', sa.JSON(), nullable=False),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.Column('replaces_exam_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('last_message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['last_message_id'], ['messages.id'], name=op.f('fk_exams_last_message_id_messages')),
    sa.ForeignKeyConstraint(['replaces_exam_id'], ['exams.id'], name=op.f('fk_exams_replaces_exam_id_exams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exams')),
    sa.UniqueConstraint('source', 'external_id', name='uq_exams_source_external_id')
    )
    with op.batch_alter_table('exams', schema=None) as batch_op:
        batch_op.create_index('ix_exams_mrn', ['mrn'], unique=False)
        batch_op.create_index('ix_exams_start_at', ['start_at'], unique=False)
        batch_op.create_index('ix_exams_replaces_exam_id', ['replaces_exam_id'], unique=False)

    op.create_table('exam_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('exam_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=40), nullable=False),
    sa.Column('status_code', sa.String(length=80), nullable=False),
    sa.Column('start_at', sa.DateTime(), nullable=True),
    sa.Column('location', sa.String(length=250), nullable=True),
    sa.Column('procedure_code', sa.String(length=80), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['exam_id'], ['exams.id'], name=op.f('fk_exam_events_exam_id_exams')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_exam_events_message_id_messages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exam_events'))
    )
    with op.batch_alter_table('exam_events', schema=None) as batch_op:
        batch_op.create_index('ix_exam_events_exam_id', ['exam_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('exam_events', schema=None) as batch_op:
        batch_op.drop_index('ix_exam_events_exam_id')

    op.drop_table('exam_events')
    with op.batch_alter_table('exams', schema=None) as batch_op:
        batch_op.drop_index('ix_exams_replaces_exam_id')
        batch_op.drop_index('ix_exams_start_at')
        batch_op.drop_index('ix_exams_mrn')

    op.drop_table('exams')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_received_at')
        batch_op.drop_index('ix_messages_outcome')

    op.drop_table('messages')
