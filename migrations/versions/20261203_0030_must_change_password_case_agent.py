"""staff: a password set by an administrator must be changed at the next sign-in; cases: the
agent who registered an agent-channel case (issue #15)

Revision ID: 0030
Revises: 0027
Create Date: 2026-12-03 10:00:00

`staff.must_change_password`: set when the system administrator creates an account with an
initial (one-time) password or resets a password; cleared when the staff member chooses their
own at /account/password. Existing accounts are not forced (false).

`petition_case.agent_id`: the community agent who registered the case on a resident's behalf
(channel agent). From this revision such a case has no first receiver until an officer of the
site claims it (认领); the agent keeps sight of it. Earlier agent cases keep the agent as their
first receiver (agent_id stays null).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0030'
down_revision: Union[str, Sequence[str], None] = '0027'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('staff') as batch:
        batch.add_column(
            sa.Column(
                'must_change_password', sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    with op.batch_alter_table('petition_case') as batch:
        batch.add_column(sa.Column('agent_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(
            'fk_petition_case_agent_id_staff', 'staff', ['agent_id'], ['id']
        )


def downgrade() -> None:
    with op.batch_alter_table('petition_case') as batch:
        batch.drop_constraint('fk_petition_case_agent_id_staff', type_='foreignkey')
        batch.drop_column('agent_id')
    with op.batch_alter_table('staff') as batch:
        batch.drop_column('must_change_password')
