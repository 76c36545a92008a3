"""The trial office's registry in the store: protocol versions and enrolments.

- :mod:`monitor.store.registry.protocols`: store protocol files as versions, read those in force.
- :mod:`monitor.store.registry.enrolments`: check, add, update and list enrolments.
- :mod:`monitor.store.registry.importing`: the all-or-nothing CSV import.
- :mod:`monitor.store.registry.records`: enrolments and exams as the engine's inputs.

The registry is the source of truth for who is enrolled (DESIGN, "FHIR (Epic)"); it holds
MRNs, so nothing here logs an enrolment's identifiers.
"""

from monitor.store.registry.enrolments import (
    EnrolmentEntry,
    EnrolmentView,
    SavedEntries,
    check_entries,
    check_entry,
    find_entry,
    list_enrolments,
    mrn_label,
    parse_mrns,
    parse_status,
    save_entries,
)
from monitor.store.registry.importing import ImportRejected, RowProblem, import_enrolments, read_enrolment_csv
from monitor.store.registry.protocols import (
    ProtocolCatalogue,
    StoredVersion,
    TrialSummary,
    describe_changes,
    list_trials,
    sha256_of,
    store_protocol,
)

__all__ = [
    "EnrolmentEntry",
    "EnrolmentView",
    "ImportRejected",
    "ProtocolCatalogue",
    "RowProblem",
    "SavedEntries",
    "StoredVersion",
    "TrialSummary",
    "check_entries",
    "check_entry",
    "describe_changes",
    "find_entry",
    "import_enrolments",
    "list_enrolments",
    "list_trials",
    "mrn_label",
    "parse_mrns",
    "parse_status",
    "read_enrolment_csv",
    "save_entries",
    "sha256_of",
    "store_protocol",
]
