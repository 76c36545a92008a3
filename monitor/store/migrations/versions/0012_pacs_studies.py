"""PACS studies of research exams

``pacs_studies``: the studies of research exams the PACS holds, by metadata only, matched to
an exam (accession, else patient id + study date + modality) or left unmatched for the
office; ``exams.accession`` gets an index for that match.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pacs_studies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("accession", sa.String(80), nullable=False),
        sa.Column("patient_id", sa.String(80), nullable=False),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("modalities", sa.String(80), nullable=False),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.Column("series", sa.JSON, nullable=False),
        sa.Column("exam_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.ForeignKey("exams.id"), nullable=True),
        sa.Column("matched_by", sa.String(32), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_pacs_studies_exam_id", "pacs_studies", ["exam_id"])
    op.create_index("ix_pacs_studies_patient_id", "pacs_studies", ["patient_id"])
    op.create_index("ix_pacs_studies_updated_at", "pacs_studies", ["updated_at"])
    op.create_index("ix_exams_accession", "exams", ["accession"])


def downgrade() -> None:
    op.drop_index("ix_exams_accession", "exams")
    op.drop_table("pacs_studies")
