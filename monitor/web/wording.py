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
