"""SQLite store-and-forward outbox (`outbox`) and its compact telemetry codec (`codec`)."""
