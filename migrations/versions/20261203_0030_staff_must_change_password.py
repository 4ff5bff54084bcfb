"""staff: a password set by an administrator must be changed at the next sign-in (issue #15)

Revision ID: 0030
Revises: 0025
Create Date: 2026-12-03 10:00:00

`staff.must_change_password`: set when the system administrator creates an account with an
initial (one-time) password or resets a password; cleared when the staff member chooses their
own at /account/password. Existing accounts are not forced (false).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0030'
down_revision: Union[str, Sequence[str], None] = '0025'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('staff') as batch:
        batch.add_column(
            sa.Column(
                'must_change_password', sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('staff') as batch:
        batch.drop_column('must_change_password')
