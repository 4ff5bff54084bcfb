"""sessions: the 调解笔录 / 接访记录 (session_minutes) and the parties' confirmations

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-04 01:40:00

Issue #20 item 2: paragraphs typed during the session, stamped with the session clock; frozen,
confirmed by each party (own link or on the mediator's device), closed into a PDF that goes
into the case file and the evidence manifest; and `session_composite.speakers`, the speaker
timeline measured while the composite job mixes the tracks.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = '0038'
down_revision: Union[str, Sequence[str], None] = '0037'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'session_minutes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('paragraphs', sa.JSON(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_by_id', sa.Integer(), nullable=True),
        sa.Column('frozen_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.Column('links', sa.JSON(), nullable=False),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('pdf', sa.LargeBinary(), nullable=True),
        sa.Column('pdf_sha256', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['session_id'], ['call_session.id']),
        sa.ForeignKeyConstraint(['updated_by_id'], ['staff.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('session_id'),
    )
    op.create_table(
        'minutes_confirmation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('participant_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('via', sa.String(length=24), nullable=False),
        sa.Column('recorded_by_id', sa.Integer(), nullable=True),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['participant_id'], ['session_participant.id']),
        sa.ForeignKeyConstraint(['recorded_by_id'], ['staff.id']),
        sa.ForeignKeyConstraint(['session_id'], ['call_session.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('session_id', 'participant_id'),
    )
    op.create_index(
        op.f('ix_minutes_confirmation_session_id'), 'minutes_confirmation', ['session_id']
    )
    with op.batch_alter_table('session_composite') as batch:
        batch.add_column(sa.Column('speakers', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('session_composite') as batch:
        batch.drop_column('speakers')
    op.drop_index(op.f('ix_minutes_confirmation_session_id'), table_name='minutes_confirmation')
    op.drop_table('minutes_confirmation')
    op.drop_table('session_minutes')
