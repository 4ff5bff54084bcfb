"""agreements: how each signature was given (the party's own link or the mediator's device,
with how the party was identified), issue #17 item 4

Revision ID: 0027
Revises: 0025
Create Date: 2026-12-03 09:30:00

`agreement_signature.via`: `own_link` (the party signed through their own SMS link),
`mediator_device` (the party signed on the mediator's device, present and identified) or
`own_account` (the mediator's own signature). `id_method` (`id_card` / `face` / `in_person`)
and `id_last4` (the last four characters of the ID number checked, for `id_card`) record how
a party signing on the mediator's device was identified. Signatures made before this revision
were all given on the mediator's device; their identification was not recorded (null).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0027'
down_revision: Union[str, Sequence[str], None] = '0025'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('agreement_signature') as batch:
        batch.add_column(
            sa.Column('via', sa.String(length=16), nullable=False, server_default='mediator_device')
        )
        batch.add_column(sa.Column('id_method', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('id_last4', sa.String(length=4), nullable=True))
    op.execute("UPDATE agreement_signature SET via = 'own_account' WHERE signer_key = 'mediator'")


def downgrade() -> None:
    with op.batch_alter_table('agreement_signature') as batch:
        batch.drop_column('id_last4')
        batch.drop_column('id_method')
        batch.drop_column('via')
