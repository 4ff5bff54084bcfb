"""cases: the court and ruling number of a 司法确认, and the parties' phones (encrypted) for
its reminder

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-04 02:00:00

Issue #17 item 10: the court liaison records 受理法院 and 文号 with the confirmation; a party
whose signing link was sent by SMS is reminded before the 30-day window closes.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = '0039'
down_revision: Union[str, Sequence[str], None] = '0038'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('mediation_agreement') as batch:
        batch.add_column(sa.Column('judicial_court', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('judicial_ruling_no', sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column('party_phones_enc', sa.JSON(), nullable=False, server_default='{}')
        )


def downgrade() -> None:
    with op.batch_alter_table('mediation_agreement') as batch:
        batch.drop_column('party_phones_enc')
        batch.drop_column('judicial_ruling_no')
        batch.drop_column('judicial_court')
