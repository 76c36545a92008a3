"""trial protocol versions, enrolments and their MRNs, findings and occurrences

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('enrolments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('trial', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('arm', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('off_study', sa.Date(), nullable=True),
    sa.Column('anchors', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrolments')),
    sa.UniqueConstraint('trial', 'subject', name='uq_enrolments_trial_subject')
    )
    op.create_table('trial_versions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('trial', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('loaded_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trial_versions')),
    sa.UniqueConstraint('trial', 'version', name='uq_trial_versions_trial_version')
    )
    with op.batch_alter_table('trial_versions', schema=None) as batch_op:
        batch_op.create_index('ix_trial_versions_sha256', ['trial', 'sha256'], unique=False)

    op.create_table('enrolment_mrns',
    sa.Column('enrolment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('mrn', sa.String(length=80), nullable=False),
    sa.ForeignKeyConstraint(['enrolment_id'], ['enrolments.id'], name=op.f('fk_enrolment_mrns_enrolment_id_enrolments')),
    sa.PrimaryKeyConstraint('enrolment_id', 'mrn', name='pk_enrolment_mrns')
    )
    with op.batch_alter_table('enrolment_mrns', schema=None) as batch_op:
        batch_op.create_index('ix_enrolment_mrns_mrn', ['mrn'], unique=False)

    op.create_table('findings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('trial', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('enrolment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('timepoint', sa.String(length=64), nullable=True),
    sa.Column('occurrence_key', sa.String(length=300), nullable=True),
    sa.Column('occurrence_label', sa.String(length=200), nullable=True),
    sa.Column('exam_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('window_start', sa.Date(), nullable=True),
    sa.Column('window_end', sa.Date(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['enrolment_id'], ['enrolments.id'], name=op.f('fk_findings_enrolment_id_enrolments')),
    sa.ForeignKeyConstraint(['exam_id'], ['exams.id'], name=op.f('fk_findings_exam_id_exams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_findings')),
    sa.UniqueConstraint('key', name=op.f('uq_findings_key'))
    )
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.create_index('ix_findings_enrolment_id', ['enrolment_id'], unique=False)
        batch_op.create_index('ix_findings_status', ['status', 'trial'], unique=False)

    op.create_table('occurrences',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('enrolment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('trial', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('timepoint', sa.String(length=64), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('due', sa.Date(), nullable=False),
    sa.Column('window_start', sa.Date(), nullable=False),
    sa.Column('window_end', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('exam_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('version', sa.String(length=200), nullable=False),
    sa.Column('required_scanner', sa.String(length=250), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['enrolment_id'], ['enrolments.id'], name=op.f('fk_occurrences_enrolment_id_enrolments')),
    sa.ForeignKeyConstraint(['exam_id'], ['exams.id'], name=op.f('fk_occurrences_exam_id_exams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_occurrences')),
    sa.UniqueConstraint('key', name=op.f('uq_occurrences_key'))
    )
    with op.batch_alter_table('occurrences', schema=None) as batch_op:
        batch_op.create_index('ix_occurrences_enrolment_id', ['enrolment_id'], unique=False)
        batch_op.create_index('ix_occurrences_trial', ['trial', 'subject'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('occurrences', schema=None) as batch_op:
        batch_op.drop_index('ix_occurrences_trial')
        batch_op.drop_index('ix_occurrences_enrolment_id')

    op.drop_table('occurrences')
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_index('ix_findings_status')
        batch_op.drop_index('ix_findings_enrolment_id')

    op.drop_table('findings')
    with op.batch_alter_table('enrolment_mrns', schema=None) as batch_op:
        batch_op.drop_index('ix_enrolment_mrns_mrn')

    op.drop_table('enrolment_mrns')
    with op.batch_alter_table('trial_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_trial_versions_sha256')

    op.drop_table('trial_versions')
    op.drop_table('enrolments')
