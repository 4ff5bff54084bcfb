"""cases: list and search indexes (column, id) and a bigram GIN index for 2-character terms

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 20:10:00.000000

Case lists are "filters, newest first, LIMIT n": the single-column indexes on site_id,
lead_dept_id, first_receiver_id and state become (column, id), which serve the same
foreign-key lookups and also return rows in id order. On PostgreSQL, `case_bigrams(text)`
gives the distinct lower-cased character bigrams of a text, and a GIN index on
`case_bigrams(summary)` finds two-character terms (噪声, 漏水), which pg_trgm cannot index.
Building that index takes about half a minute per million cases.
"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COMPOSITES = [
    ("ix_petition_case_site_id", "ix_petition_case_site_id_id", "site_id"),
    ("ix_petition_case_lead_dept_id", "ix_petition_case_lead_dept_id_id", "lead_dept_id"),
    ("ix_petition_case_first_receiver_id", "ix_petition_case_first_receiver_id_id",
     "first_receiver_id"),
    ("ix_petition_case_state", "ix_petition_case_state_id", "state"),
]

# plpgsql, not SQL: a SQL function with a FROM clause is about 3x slower per call, which is
# what an index build on a million rows pays for. Array appends are in place (expanded
# arrays), and GIN removes duplicate keys itself.
CASE_BIGRAMS = """
CREATE OR REPLACE FUNCTION case_bigrams(t text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    l text := lower(t);
    n int := char_length(t);
    r text[] := '{}';
BEGIN
    FOR i IN 1 .. n - 1 LOOP
        r := r || substr(l, i, 2);
    END LOOP;
    RETURN r;
END
$$
"""


def upgrade() -> None:
    """Upgrade schema."""
    for old, new, column in COMPOSITES:
        op.drop_index(old, table_name="petition_case")
        op.create_index(new, "petition_case", [column, "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CASE_BIGRAMS)
        op.execute("CREATE INDEX ix_petition_case_summary_bigram ON petition_case "
                   "USING gin (case_bigrams(summary))")


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_petition_case_summary_bigram")
        op.execute("DROP FUNCTION IF EXISTS case_bigrams(text)")
    for old, new, column in COMPOSITES:
        op.drop_index(new, table_name="petition_case")
        op.create_index(old, "petition_case", [column], unique=False)
