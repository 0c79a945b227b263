"""The catalog database: engine, models, bulk writers, migrations and locks."""
