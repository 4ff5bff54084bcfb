"""cases: who was told of a case by 三级抄告 or is the target of a 督办

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-02 18:00:00

`case_escalation_recipient`: one row per staff member the deadline sweep escalated a case to
(level 1-3) or a 督办 was addressed to (level 0); they may open that case.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'case_escalation_recipient',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('staff_id', sa.Integer(), nullable=False),
        sa.Column('level', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['petition_case.id'], name=op.f('fk_case_escalation_recipient_case_id_petition_case')),
        sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_case_escalation_recipient_staff_id_staff')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_case_escalation_recipient')),
    )
    op.create_index(op.f('ix_case_escalation_recipient_case_id'), 'case_escalation_recipient', ['case_id'], unique=False)
    op.create_index(op.f('ix_case_escalation_recipient_staff_id'), 'case_escalation_recipient', ['staff_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_case_escalation_recipient_staff_id'), table_name='case_escalation_recipient')
    op.drop_index(op.f('ix_case_escalation_recipient_case_id'), table_name='case_escalation_recipient')
    op.drop_table('case_escalation_recipient')
