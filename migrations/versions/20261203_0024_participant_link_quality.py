"""sessions: each participant's connection quality (the session record, issue #16)

Revision ID: 0024
Revises: 0018
Create Date: 2026-12-03 06:30:00

`session_participant.quality`: the SFU's summary of the participant's downlink while in the
room (media.quality.LinkQuality as JSON: grade, median estimate, loss, video paused time).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0024'
down_revision: Union[str, Sequence[str], None] = '0018'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('session_participant') as batch:
        batch.add_column(sa.Column('quality', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('session_participant') as batch:
        batch.drop_column('quality')
