"""The job: `status` (the names), `machine` (every rule), `service` (the transitions in the
database), `models` (the tables), `schemas` (the wire shapes), `pacing` (poll waits)."""
