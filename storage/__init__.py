"""Persistence: SQLModel tables, repositories and Alembic migrations (SQLite and PostgreSQL)."""
