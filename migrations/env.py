"""Alembic environment: the version table lives in schema `city` with the data."""

from alembic import context
from sqlalchemy import create_engine, pool, text

URL = context.config.get_main_option("sqlalchemy.url")


def run_migrations_online() -> None:
    engine = create_engine(URL, poolclass=pool.NullPool)
    with engine.connect() as conn:
        conn.execute(text("create schema if not exists city"))
        conn.commit()
        context.configure(connection=conn, version_table_schema="city",
                          transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=URL, version_table_schema="city", literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
