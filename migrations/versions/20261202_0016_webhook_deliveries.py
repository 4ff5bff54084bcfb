"""webhooks: the delivery outbox of signed session-event webhooks

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 18:30:00

`webhook_delivery`: one row per (event, endpoint) with the exact body to POST, run by the job
runner like `scheduled_job` and `case_notification` (status, due_at, attempts, last_error,
locked_until, sent_at).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0016'
down_revision: Union[str, Sequence[str], None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'webhook_delivery',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('event', sa.String(length=64), nullable=False),
        sa.Column('url', sa.String(length=500), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_webhook_delivery_due', 'webhook_delivery', ['status', 'due_at'], unique=False)
    op.create_index('ix_webhook_delivery_event_id', 'webhook_delivery', ['event_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_webhook_delivery_event_id', table_name='webhook_delivery')
    op.drop_index('ix_webhook_delivery_due', table_name='webhook_delivery')
    op.drop_table('webhook_delivery')
