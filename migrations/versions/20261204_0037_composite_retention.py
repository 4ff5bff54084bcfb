"""sessions: `session_composite.deleted_at`, set when the retention job deletes the composite

Revision ID: 0037
Revises: 0034
Create Date: 2026-12-04 01:20:00

Issue #20 item 5: after a session's retention period the composite MP4 is deleted with the
originals (the manifest that lists it is kept); the row stays, with the time of deletion.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = '0037'
down_revision: Union[str, Sequence[str], None] = '0034'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('session_composite') as batch:
        batch.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('session_composite') as batch:
        batch.drop_column('deleted_at')
