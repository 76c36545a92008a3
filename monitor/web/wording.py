"""The words the dashboard and its calendar feeds show for the engine's values."""

# The words the office reads for the engine's occurrence statuses (matrix, badges, calendar).
STATUS_TEXT = {
    "planned": "not yet due",
    "due": "due",
    "booked": "booked",
    "done_in_window": "done in window",
    "done_out_of_window": "done out of window",
    "missed": "missed",
    "unconfirmed": "unconfirmed",  # booked, its time passed, no arrival or completion came
    "before_monitoring": "before monitoring",  # closed before the office watched the subject
}

# What the coordinator does next about an open finding of each kind (Today, Findings).
NEXT_STEP = {
    "wrong_orderable": "Ask scheduling to change the order to one the protocol accepts before the scan.",
    "early": "Ask scheduling to move the exam into the window, or get the sponsor's approval.",
    "late": "Ask scheduling to move the exam into the window, or get the sponsor's approval.",
    "duplicate": "Ask scheduling to cancel the extra booking.",
    "cancelled": "Ask scheduling to book it again inside the window.",
    "no_show": "Call the subject and book it again inside the window.",
    "due_unscheduled": "Ask scheduling to book it inside the window.",
    "missed": "File the protocol deviation and tell the sponsor.",
    "unconfirmed": "Check in Epic whether it was done; if it was, ask the interface team why no "
    "completion came.",
    "unmatched_exam": "Check whether this exam belongs to the trial.",
    "after_off_study": "Check the subject's status; cancel the research order if they are off study.",
    "images_missing": "Check that the study was sent to the PACS with its accession number.",
    "parameter_deviation": "Check whether the series was repeated correctly; if not, record the deviation.",
    "scanner_mismatch": "Record the scanner change, or ask the sponsor whether a repeat is needed.",
    "core_lab_due": "Send the images to the core lab, or record the upload and its confirmation number.",
    "core_lab_overdue": "Send the images to the core lab now and tell the sponsor they are late.",
    "core_lab_refused": "Have the named attributes cleaned in the PACS, then send the copy again.",
    "core_lab_query_due": "Answer the core lab's query (on the exam page) and record the answer.",
    "core_lab_query_overdue": "Answer the core lab's query now; tell the sponsor if it needs more time.",
}
