"""cases: 集中交办 batches and 红牌 red cards

Revision ID: 0022
Revises: 0024
Create Date: 2026-12-03 07:00:00

`supervision_batch` + `supervision_batch_case`: a batch of prominent cases assigned to one
responsible leader with a deadline. `red_card`: a red card issued to a department (reason,
optional case), counted in 双考.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0022'
down_revision: Union[str, Sequence[str], None] = '0024'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'supervision_batch',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('title', sa.String(length=128), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('leader_id', sa.Integer(), nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['leader_id'], ['staff.id'], name=op.f('fk_supervision_batch_leader_id_staff')),
        sa.ForeignKeyConstraint(['created_by_id'], ['staff.id'], name=op.f('fk_supervision_batch_created_by_id_staff')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_supervision_batch')),
    )
    op.create_index(op.f('ix_supervision_batch_leader_id'), 'supervision_batch', ['leader_id'], unique=False)
    op.create_table(
        'supervision_batch_case',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('batch_id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['batch_id'], ['supervision_batch.id'], name=op.f('fk_supervision_batch_case_batch_id_supervision_batch')),
        sa.ForeignKeyConstraint(['case_id'], ['petition_case.id'], name=op.f('fk_supervision_batch_case_case_id_petition_case')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_supervision_batch_case')),
        sa.UniqueConstraint('batch_id', 'case_id', name=op.f('uq_supervision_batch_case_batch_id_case_id')),
    )
    op.create_index(op.f('ix_supervision_batch_case_batch_id'), 'supervision_batch_case', ['batch_id'], unique=False)
    op.create_index(op.f('ix_supervision_batch_case_case_id'), 'supervision_batch_case', ['case_id'], unique=False)
    op.create_table(
        'red_card',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('department_id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('issued_by_id', sa.Integer(), nullable=False),
        sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['department_id'], ['department.id'], name=op.f('fk_red_card_department_id_department')),
        sa.ForeignKeyConstraint(['case_id'], ['petition_case.id'], name=op.f('fk_red_card_case_id_petition_case')),
        sa.ForeignKeyConstraint(['issued_by_id'], ['staff.id'], name=op.f('fk_red_card_issued_by_id_staff')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_red_card')),
    )
    op.create_index(op.f('ix_red_card_department_id'), 'red_card', ['department_id'], unique=False)
    op.create_index(op.f('ix_red_card_case_id'), 'red_card', ['case_id'], unique=False)
    op.create_index(op.f('ix_red_card_issued_at'), 'red_card', ['issued_at'], unique=False)


def downgrade() -> None:
    op.drop_table('red_card')
    op.drop_table('supervision_batch_case')
    op.drop_table('supervision_batch')
