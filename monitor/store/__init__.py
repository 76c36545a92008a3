"""The store: the only code that writes SQL.

Every table is declared once, in :mod:`monitor.store.schema`, which nothing outside this
package imports (``lint-imports`` checks it). Everything else asks one small typed API per
group of tables, named after what they hold:

=====================  ===================================================================
module                 what it holds
=====================  ===================================================================
``messages``           every message received (raw, outcome, ACK), resends, feed health
``exams``              exams and their event history; what the dashboard lists of them
``registry``           protocol versions in force, enrolments and their MRNs
``findings``           the engine's findings and the occurrences (subject x timepoint)
``outbox``             notifications: planned, claimed, sent, retried
``accounts``           dashboard accounts, sessions and the audit trail
``calendar``           iCalendar feed tokens
``polls``              FHIR poll runs
``database``           engines, durability settings, migrations (Alembic)
=====================  ===================================================================
"""
