"""cases: index (agent_id, id) for the case list's "registered by me as agent" branch

Revision ID: 0034
Revises: 0030
Create Date: 2026-12-03 21:00:00

Migration 0030 added `petition_case.agent_id` and the case list's visibility branch
`agent_id = me`, newest first, without an index: on 1,000,000 cases a department handler's
list walked the whole primary key (190 ms instead of 13 ms; docs/performance.md).
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0034'
down_revision: Union[str, Sequence[str], None] = '0030'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index('ix_petition_case_agent_id_id', 'petition_case', ['agent_id', 'id'])


def downgrade() -> None:
    op.drop_index('ix_petition_case_agent_id_id', table_name='petition_case')
