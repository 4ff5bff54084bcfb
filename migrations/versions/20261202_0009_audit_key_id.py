"""audit: the id of the MAC key each entry was chained with

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 11:30:00

`audit_log.key_id`: entries are now chained with HMAC-SHA256 under a key derived from the
deployment secret; the column names that key so a rotated secret still verifies old entries.
Existing entries keep '' (the former plain SHA-256 chain), which verification still accepts
before the first keyed entry and rejects after it.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('audit_log') as batch:
        batch.add_column(sa.Column('key_id', sa.String(length=16), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('audit_log') as batch:
        batch.drop_column('key_id')
