"""sessions: a party's side in a mediation (申请人 / 被申请人)

Revision ID: 0014
Revises: 0009
Create Date: 2026-12-02 18:00:00

`session_participant.side`: "applicant" or "respondent" for a party or its agent booked from
the case page; NULL for staff, observers, interpreters and rows written before. The roles
(`participant_role`, now with `interpreter`) and outcomes (`session_outcome`, now with
`adjourned`) are non-native enums (VARCHAR(32), no CHECK constraint): no change needed there.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0014'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('session_participant') as batch:
        batch.add_column(sa.Column('side', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('session_participant') as batch:
        batch.drop_column('side')
