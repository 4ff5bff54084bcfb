"""cases: where each year of the holiday calendar came from (provisional years)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 07:00:00

`holiday_year`: one row per loaded year of the holiday calendar: provisional (the State
Council notice is not yet published), its source, and who loaded it when.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0018'
down_revision: Union[str, Sequence[str], None] = '0017'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'holiday_year',
        sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('provisional', sa.Boolean(), nullable=False),
        sa.Column('source', sa.String(length=200), nullable=False),
        sa.Column('loaded_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('loaded_by', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('year'),
    )


def downgrade() -> None:
    op.drop_table('holiday_year')
