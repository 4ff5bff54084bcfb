"""sessions: signed evidence manifests and recordings deleted by retention

Revision ID: 0017
Revises: 0009
Create Date: 2026-12-02 18:00:00

`evidence_manifest`: a session's signed (Ed25519) and optionally timestamped (RFC 3161)
manifest, kept after the retention job deletes the files it lists. `recording.deleted_at`:
when the retention job deleted the file.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0017'
down_revision: Union[str, Sequence[str], None] = '0016'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'evidence_manifest',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('manifest', sa.LargeBinary(), nullable=False),
        sa.Column('signature', sa.LargeBinary(), nullable=False),
        sa.Column('key_id', sa.String(length=16), nullable=False),
        sa.Column('timestamp_token', sa.LargeBinary(), nullable=True),
        sa.Column('inline_files', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['session_id'], ['call_session.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('session_id', 'seq'),
    )
    op.create_index(
        op.f('ix_evidence_manifest_session_id'), 'evidence_manifest', ['session_id'], unique=False
    )
    with op.batch_alter_table('recording') as batch:
        batch.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('recording') as batch:
        batch.drop_column('deleted_at')
    op.drop_index(op.f('ix_evidence_manifest_session_id'), table_name='evidence_manifest')
    op.drop_table('evidence_manifest')
