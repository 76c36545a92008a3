"""From planned notifications to delivered messages: the outbox, its dispatcher and the scheduler.

- :mod:`monitor.store.outbox.planning`: after each evaluation, the engine's planned
  notifications become outbox rows (``monitor.store.outbox``), in the evaluation's
  transaction; rows no longer planned are cancelled. Daily digests are planned here too.
- :mod:`monitor.dispatch.content`: what a row's message says, rebuilt from the store at
  send time (exam, finding, visit, the protocol's exam type), and the one-line next step.
- :mod:`monitor.store.outbox.claims`: claiming due rows atomically and recording outcomes.
- :mod:`monitor.dispatch.dispatcher`: sending claimed rows through the notifiers on worker
  threads, paced per address, checked before any resend; retries and backoff.
- :mod:`monitor.dispatch.followups`: messages about one exam: which earlier message a new one
  updates (a reschedule, a cancellation) and what it says changed.
- :mod:`monitor.dispatch.scheduler`: the APScheduler jobs of ``hiro-monitor run``.
"""
