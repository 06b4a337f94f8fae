"""The full-text search index (mailcore.store.search): FTS5 on SQLite, tsvector + GIN on PostgreSQL."""
from django.db import migrations


def create_index(apps, schema_editor):
    from mailcore.store import search

    statements = search.POSTGRES_SCHEMA if schema_editor.connection.vendor == "postgresql" else search.SQLITE_SCHEMA
    for statement in statements:
        schema_editor.execute(statement)


def drop_index(apps, schema_editor):
    from mailcore.store import search

    for statement in search.DROP_SCHEMA.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("mailcore", "0004_dkim_keys")]
    operations = [migrations.RunPython(create_index, drop_index)]
