"""cases: the notification outbox gets the job columns (due_at, last_error, locked_until)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 11:20:00.000000

`case_notification` is now run by the one job runner (server.kernel.jobs) under the same
policy as `scheduled_job`: a lease (`locked_until`), exponential backoff (`due_at`) and the
last error (`last_error`). Existing rows become due at their creation time.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('case_notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE case_notification SET due_at = created_at")
    with op.batch_alter_table('case_notification', schema=None) as batch_op:
        batch_op.alter_column('due_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.alter_column('last_error', existing_type=sa.Text(), server_default=None)
        batch_op.create_index('ix_case_notification_due', ['status', 'due_at'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('case_notification', schema=None) as batch_op:
        batch_op.drop_index('ix_case_notification_due')
        batch_op.drop_column('locked_until')
        batch_op.drop_column('last_error')
        batch_op.drop_column('due_at')
