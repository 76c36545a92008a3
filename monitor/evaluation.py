"""Running the compliance engine over the store and recording what it found.

``evaluate_all`` judges every enrolment; ``evaluate_for_exams`` only the enrolments of the
patients those exams belong to (by MRN, widened to every enrolment of the same patients);
``Evaluator.evaluate_enrolments`` a given set (after an enrolment changed). Each records
the result with :func:`monitor.store.findings.record_evaluation`: new finding keys open,
changed ones update, vanished ones resolve, a resolved key that comes back reopens; only
the evaluated enrolments' findings are touched. ``now`` is always an argument.

How a run stays correct next to the feed writer:

1. Read the inputs (enrolments, exams, protocols) and note the newest exam event id.
2. Run the engine (no database).
3. In one write transaction: if exam events arrived since step 1 for patients in scope,
   re-read and re-judge those enrolments first (so a long ``evaluate`` never writes a view
   older than what the feed's own re-evaluation wrote); then record.

Step 3 is retried (up to ``attempts``) when the store reports a conflict: SQLite's
"database is locked" or a finding key inserted first by a concurrent run.

Planned notifications go into the outbox in the same transaction as the findings
(:func:`monitor.store.outbox.planning.plan_notifications`: new keys pending, vanished pending
keys of the evaluated enrolments cancelled), so both ``hiro-monitor evaluate`` and the feed
writer's hook plan messages; the dispatcher sends them. The summary also carries the
engine's :class:`rules.Evaluation`, whose ``planned_notifications`` are complete for
``EvaluationSummary.scope``.

A long-lived evaluator's sweeps (the daemon's scheduled ``evaluate_all``) judge only what
changed. The first sweep judges everyone and remembers, per enrolment, what it was judged
from (the enrolment, its protocol) and until when that judgement holds with the same inputs
(:func:`rules.stable_until`: the site's next midnight, or an exam's next lead time, start
or unconfirmed instant). A later sweep judges again only the enrolments, widened to the
same patients, whose enrolment or protocol differs, whose MRNs' exams received an exam
event since (every change to an exam comes with one; :func:`mrns_touched_since` also
names the MRN an exam was filed under before), or whose judgement ran out. The others
would come out the same: their rows already say what a judgement would write (only the
engine plans notifications and writes findings). Every ``[evaluation] full_sweep_hours``,
and when the clock goes back, a sweep judges everyone again: a safety net for a change
no exam event marks (or, on PostgreSQL, an event committed after a later one was read).

Sweeps (``evaluate_all``, ``evaluate_enrolments``) plan a quiet first run (``[dispatch]
quiet_first_run``: an empty outbox records booking notices as skipped), except for the
enrolments caught up in step 3: their exams changed while the sweep ran, which is news. The
feed's own re-evaluation is never quiet either: the booking it reacts to has just arrived.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from monitor.config import Settings
from monitor.store.core_lab_queries import open_query_dues
from monitor.store.findings import FindingChanges, record_evaluation
from monitor.store.images import images_for
from monitor.store.judgements import load_judgements, save_judgements, save_sweep
from monitor.store.outbox.planning import PlanChanges, never_planned, plan_notifications
from monitor.store.polls import first_success, last_success
from monitor.store.registry.protocols import ProtocolCatalogue
from monitor.store.registry.records import (
    enrolment_ids_for_exams,
    event_mark,
    load_enrolments,
    load_exams,
    mrns_touched_since,
    patient_groups,
    same_patients,
)
from monitor.store.submissions import submissions_seen
from rules import (
    Enrolment,
    Evaluation,
    ExamsByMrn,
    ImagesSeen,
    Trial,
    evaluate_enrolments,
    index_exams,
    stable_until,
)
from rules.core_lab import submission_instants
from rules.engine import exams_of

__all__ = ["EvaluationSummary", "Evaluator", "evaluate_all", "evaluate_for_exams"]

log = logging.getLogger("monitor.evaluation")


@dataclass(frozen=True, slots=True)
class EvaluationSummary:
    """What one run judged and changed.

    ``scope`` holds the ids of the enrolments judged (those whose trial has a protocol);
    ``evaluation`` is the engine's full answer for them, planned notifications included.
    """

    evaluation: Evaluation = field(default_factory=Evaluation)
    changes: FindingChanges = field(default_factory=FindingChanges)
    outbox: PlanChanges = field(default_factory=PlanChanges)
    scope: frozenset[int] = frozenset()
    unknown_trials: tuple[str, ...] = ()
    seconds: float = 0.0
    up_to_date: int = 0  # enrolments a sweep did not judge: nothing they depend on changed

    @property
    def enrolments(self) -> int:
        return len(self.scope)

    def by_kind(self) -> dict[str, dict[str, int]]:
        """``{kind: {"opened": n, "reopened": n, "updated": n, "resolved": n}}`` for kinds that changed."""
        table: dict[str, dict[str, int]] = {}
        for name in ("opened", "reopened", "updated", "resolved"):
            counts: Counter[str] = getattr(self.changes, name)
            for kind, count in counts.items():
                table.setdefault(kind, dict.fromkeys(("opened", "reopened", "updated", "resolved"), 0))
                table[kind][name] = count
        return dict(sorted(table.items()))


@dataclass(slots=True)
class _Inputs:
    enrolments: list[Enrolment]
    trials: dict[str, Trial]
    mark: int


@dataclass(slots=True)
class _Judged:
    evaluation: Evaluation
    until: dict[int, datetime]  # per judged enrolment: how long its judgement holds


@dataclass(slots=True)
class _Memo:
    """What the sweeps so far judged, and from what: the next one judges only what changed.

    Kept in the store too (:mod:`monitor.store.judgements`), so that a new process's first
    sweep is not a full one when the last full sweep is recent and its settings the same."""

    mark: int  # exam events up to this id were taken into account
    judged_at: datetime
    full_at: datetime  # when the last full sweep started
    full_until: datetime  # the next sweep from this instant judges everything again
    fingerprints: dict[int, str]  # enrolment id -> what it was judged from (_fingerprint)
    until: dict[int, datetime]


class Evaluator:
    """Evaluates enrolments in one store; keeps the parsed protocols between runs.

    Not thread-safe: give each thread its own (the feed writer keeps one on its thread).
    Raises SQLAlchemy errors when the store fails after ``attempts`` tries, ValueError for
    a naive ``now``.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        due_soon_days: int | None = None,
        attempts: int = 3,
        sweep_part: int = 1_000,
    ) -> None:
        self.engine = engine
        self.zone = ZoneInfo(settings.site.timezone)
        self.rules = settings.evaluation
        self.due_soon_days = self.rules.due_soon_days if due_soon_days is None else due_soon_days
        self.attempts = max(attempts, 1)
        self.catalogue = ProtocolCatalogue()
        self.quiet_first_run = settings.dispatch.quiet_first_run
        self.full_sweep = timedelta(hours=self.rules.full_sweep_hours)
        self.sweep_part = max(sweep_part, 1)  # enrolments judged and recorded together (whole patients)
        self.pacs = settings.pacs  # when enabled, each exam's images are judged too (rules.images)
        self.images_due = timedelta(hours=self.pacs.images_due_hours) if self.pacs.enabled else None
        self._memo: _Memo | None = None
        # What every judgement also depends on: a stored memo made under other settings, or
        # by another version of the program, is not trusted (the first sweep judges everyone).
        self.settings_print = _settings_print(settings, self.due_soon_days)

    # -- entry points --------------------------------------------------------------------

    def evaluate_all(self, now: datetime, *, full: bool = False) -> EvaluationSummary:
        """Bring the findings of every enrolment up to date at ``now``.

        The first sweep of an evaluator judges every enrolment, and so does the first one
        ``[evaluation] full_sweep_hours`` after that, or when the clock went back. In
        between, a sweep judges only the enrolments (and the others of the same patients)
        whose enrolment or protocol changed, whose exams received an event, or whose
        judgement has run out (:func:`rules.stable_until`): the others would come out the
        same, so their findings and outbox rows already say what a judgement would write.
        A new evaluator starts from what the last sweep of any process left in the store,
        when it was made under the same settings. ``full``: judge everyone now.
        """
        memo = self._memo if self._memo is not None or full else self._stored_memo()
        if full or memo is None or not memo.judged_at <= now < memo.full_until:
            return self._judge_everyone(now)
        self._memo = memo
        started = time.perf_counter()
        with self.engine.connect() as conn:
            mark = event_mark(conn)
            current = load_enrolments(conn)
            self.catalogue.trials(conn, {enrolment.trial for enrolment in current})
            touched = mrns_touched_since(conn, memo.mark)
            stale = {
                enrolment.id
                for enrolment in current
                if memo.fingerprints.get(enrolment.id) != self._fingerprint(enrolment)
                or memo.until.get(enrolment.id, now) <= now
                or touched.intersection(enrolment.mrns)
            }
            scope = same_patients(conn, stale) if stale else set()
        for gone in memo.fingerprints.keys() - {enrolment.id for enrolment in current}:
            memo.fingerprints.pop(gone, None)
            memo.until.pop(gone, None)
        summary = EvaluationSummary()
        if scope:
            summary = self._run(scope, now, quiet=self.quiet_first_run, sweep_mark=mark)
        memo.mark, memo.judged_at = mark, now  # only once what changed is recorded
        with self.engine.begin() as conn:
            save_sweep(conn, mark, now, memo.full_at, self.settings_print)
        return replace(summary, up_to_date=len(current) - len(scope), seconds=time.perf_counter() - started)

    def _judge_everyone(self, now: datetime) -> EvaluationSummary:
        """Every enrolment, whole patients at a time, ``sweep_part`` enrolments per part, each
        part read, judged and recorded in its own transaction: memory and the store's write
        lock are held for one part, not for 300,000 exams at once. Whether this is the quiet
        first planning is decided once, before the first part is planned."""
        started = time.perf_counter()
        with self.engine.connect() as conn:
            mark = event_mark(conn)
            groups = patient_groups(conn)
            first_planning = self.quiet_first_run and never_planned(conn)
        self._memo = _Memo(mark, now, now, now + self.full_sweep, {}, {})
        parts = [
            self._run(part, now, quiet=self.quiet_first_run, first_planning=first_planning, sweep_mark=mark)
            for part in _parts(groups, self.sweep_part)
        ]
        with self.engine.begin() as conn:
            save_sweep(conn, mark, now, now, self.settings_print)
        return replace(_merged(parts), seconds=time.perf_counter() - started)

    def _stored_memo(self) -> _Memo | None:
        """The sweeps' memo as the last process left it in the store, if it was made under
        the same settings (and program version); None: judge everyone."""
        with self.engine.connect() as conn:
            stored = load_judgements(conn)
        if stored is None or stored.settings != self.settings_print:
            return None
        return _Memo(
            stored.mark,
            stored.judged_at,
            stored.full_at,
            stored.full_at + self.full_sweep,
            stored.fingerprints,
            stored.until,
        )

    def _fingerprint(self, enrolment: Enrolment) -> str:
        """What a judgement of ``enrolment`` is made from, besides its exams and the clock: the
        enrolment itself and the text of its trial's protocol in force (as the catalogue last
        read it)."""
        text = json.dumps(
            [
                enrolment.trial, enrolment.subject, sorted(enrolment.mrns), enrolment.arm,
                enrolment.status.value, str(enrolment.off_study), str(enrolment.monitored_from),
                sorted((name, str(day)) for name, day in enrolment.anchors.items()),
                sorted(enrolment.pools.items()), self.catalogue.sha_of(enrolment.trial),
            ]
        )  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()

    def evaluate_for_exams(self, exam_ids: Collection[int], now: datetime) -> EvaluationSummary:
        """Judge the enrolments of the patients of ``exam_ids`` (nothing to do: an empty summary)."""
        if not exam_ids:
            return EvaluationSummary()
        with self.engine.connect() as conn:
            found = enrolment_ids_for_exams(conn, exam_ids)
            scope = same_patients(conn, found) if found else set()
        return self._run(scope, now, quiet=False) if scope else EvaluationSummary()

    def evaluate_enrolments(self, enrolment_ids: Collection[int], now: datetime) -> EvaluationSummary:
        """Judge ``enrolment_ids`` and every enrolment of the same patients."""
        if not enrolment_ids:
            return EvaluationSummary()
        with self.engine.connect() as conn:
            scope = same_patients(conn, enrolment_ids)
        return self._run(scope, now, quiet=self.quiet_first_run)

    def preview(self, now: datetime) -> Evaluation:
        """What the engine concludes for every enrolment at ``now``, recording nothing (the
        ``evaluate --at`` what-if: a coordinator asks what next Friday will look like)."""
        with self.engine.connect() as conn:
            return self._judge(conn, self._read(conn, None), now, all_patients=True).evaluation

    def observe_exams(self, exam_ids: Sequence[int], now: datetime) -> EvaluationSummary | None:
        """:meth:`evaluate_for_exams` for code that must not fail because of it (the feed writer).

        Never raises: a failure is logged by type only (database errors quote parameters,
        which can be MRNs) and the next event or ``hiro-monitor evaluate`` catches up; the
        result is then None.
        """
        try:
            summary = self.evaluate_for_exams(exam_ids, now)
        except Exception as exc:
            log.error("re-evaluation after %d exam(s) failed (%s)", len(exam_ids), type(exc).__name__)
            return None
        if summary.changes.changed or summary.outbox.changed:
            outbox = summary.outbox
            log.info(
                "re-evaluated %d enrolment(s) in %.1f ms: %s; outbox %d new, %d moved, %d cancelled",
                summary.enrolments,
                summary.seconds * 1000,
                _counts_text(summary.changes),
                outbox.added + outbox.reinstated,
                outbox.moved,
                outbox.cancelled,
            )
        return summary

    # -- one run -------------------------------------------------------------------------

    def _read(self, conn: Connection, scope: Collection[int] | None) -> _Inputs:
        mark = event_mark(conn)
        enrolments = load_enrolments(conn, scope)
        trials = self.catalogue.trials(conn, {enrolment.trial for enrolment in enrolments})
        return _Inputs(enrolments, trials, mark)

    def _judge(
        self, conn: Connection, inputs: _Inputs, now: datetime, all_patients: bool, *, until: bool = False
    ) -> _Judged:
        """The engine's answer for ``inputs``; with ``until``, how long each judgement holds
        (only a sweep keeps that: the feed's re-evaluation and the what-if do not)."""
        judged = [enrolment for enrolment in inputs.enrolments if enrolment.trial in inputs.trials]
        mrns = None if all_patients else {mrn for enrolment in judged for mrn in enrolment.mrns}
        records = load_exams(conn, mrns) if mrns is None or mrns else []
        exams = index_exams(records)
        images = self._images(conn, None if all_patients else [exam.id for exam in records])
        evaluation = evaluate_enrolments(
            inputs.trials,
            inputs.enrolments,
            exams,
            now,
            site_zone=self.zone,
            due_soon_days=self.due_soon_days,
            alert_lookback_days=self.rules.alert_lookback_days,
            unconfirmed_after_hours=self.rules.unconfirmed_after_hours,
            images=images,
        )
        return _Judged(evaluation, self._until(inputs.trials, judged, exams, images, now) if until else {})

    def _until(
        self,
        trials: dict[str, Trial],
        judged: Sequence[Enrolment],
        exams: ExamsByMrn,
        images: ImagesSeen | None,
        now: datetime,
    ) -> dict[int, datetime]:
        return {
            enrolment.id: stable_until(
                trials[enrolment.trial],
                enrolment,
                exams,
                now,
                site_zone=self.zone,
                unconfirmed_after_hours=self.rules.unconfirmed_after_hours,
                images_due_after=self.images_due,
                also_at=_submission_instants(trials[enrolment.trial], enrolment, exams, images),
            )
            for enrolment in judged
        }

    def _images(self, conn: Connection, exam_ids: Collection[int] | None) -> ImagesSeen | None:
        """What the PACS holds for ``exam_ids`` (every exam when None); None when no PACS is
        watched. Exams are expected to have images from the first poll that ran to its end,
        less the days that poll listed, as far as the last poll that ran to its end saw."""
        if self.images_due is None:
            return None
        first, last = first_success(conn, self.pacs.feed), last_success(conn, self.pacs.feed)
        watched_from = first - timedelta(days=self.pacs.look_back_days) if first is not None else None
        return ImagesSeen(
            images_for(conn, exam_ids),
            watched_from,
            last,
            self.images_due,
            submissions_seen(conn, exam_ids),
            open_query_dues(conn, exam_ids),
        )

    def _run(
        self,
        scope: Collection[int],
        now: datetime,
        *,
        quiet: bool,
        first_planning: bool | None = None,
        sweep_mark: int | None = None,
    ) -> EvaluationSummary:
        """Judge ``scope`` and record it; a sweep's part (``sweep_mark`` given) goes into
        the sweeps' memo."""
        started = time.perf_counter()
        remember = self._memo is not None and sweep_mark is not None
        with self.engine.connect() as conn:
            inputs = self._read(conn, scope)
            judged_now = self._judge(conn, inputs, now, all_patients=False, until=remember)
        evaluation = judged_now.evaluation
        judged = frozenset(e.id for e in inputs.enrolments if e.trial in inputs.trials)
        for attempt in range(1, self.attempts + 1):
            try:
                with self.engine.begin() as conn:
                    current, arrived, until = self._catch_up(conn, inputs, judged_now, now, remember)
                    quiet_ones = judged - arrived if quiet else frozenset()
                    changes = record_evaluation(conn, current.findings, current.occurrences, judged, now)
                    details = {finding.key: finding.detail for finding in current.findings}
                    outbox = plan_notifications(
                        conn,
                        current.planned_notifications,
                        judged,
                        now,
                        details,
                        quiet_enrolments=quiet_ones,
                        first_planning=first_planning,
                    )
                    memory = self._judgements(inputs, until) if remember else {}
                    if memory:
                        save_judgements(conn, memory)
                break
            except (OperationalError, IntegrityError) as exc:
                if attempt == self.attempts:
                    raise
                log.warning("recording findings conflicted (%s); retrying", type(exc).__name__)
                time.sleep(0.05 * attempt)
        if remember and self._memo is not None:  # only once recorded: a failed run taught nothing
            for enrolment_id, (fingerprint, holds) in memory.items():
                self._memo.fingerprints[enrolment_id] = fingerprint
                self._memo.until[enrolment_id] = holds
        return EvaluationSummary(
            evaluation=current,
            changes=changes,
            outbox=outbox,
            scope=judged,
            unknown_trials=evaluation.unknown_trials,
            seconds=time.perf_counter() - started,
        )

    def _judgements(self, inputs: _Inputs, until: dict[int, datetime]) -> dict[int, tuple[str, datetime]]:
        """What ``inputs`` were judged from and how long each judgement holds, for the sweeps'
        memo and the store; an enrolment whose trial has no protocol holds until the protocol
        comes (its fingerprint changes) or the next full sweep."""
        assert self._memo is not None
        last = self._memo.full_until
        return {e.id: (self._fingerprint(e), until.get(e.id, last)) for e in inputs.enrolments}

    def _catch_up(
        self, conn: Connection, inputs: _Inputs, judged: _Judged, now: datetime, until: bool
    ) -> tuple[Evaluation, frozenset[int], dict[int, datetime]]:
        """``judged`` with the enrolments touched by exam events since it was read judged
        again, the ids of those enrolments, and how long each judgement holds."""
        evaluation = judged.evaluation
        touched = mrns_touched_since(conn, inputs.mark)
        stale = {e.id for e in inputs.enrolments if touched.intersection(e.mrns)}
        if not stale:
            return evaluation, frozenset(), judged.until
        stale = _same_patients_among(inputs.enrolments, stale)
        again = _Inputs([e for e in inputs.enrolments if e.id in stale], inputs.trials, inputs.mark)
        fresh = self._judge(conn, again, now, all_patients=False, until=until)
        caught_up = Evaluation(
            findings=(
                *(f for f in evaluation.findings if f.enrolment_id not in stale),
                *fresh.evaluation.findings,
            ),
            occurrences=(
                *(o for o in evaluation.occurrences if o.enrolment_id not in stale),
                *fresh.evaluation.occurrences,
            ),
            planned_notifications=(
                *(n for n in evaluation.planned_notifications if n.enrolment_id not in stale),
                *fresh.evaluation.planned_notifications,
            ),
            unknown_trials=evaluation.unknown_trials,
        )
        return caught_up, frozenset(stale), {**judged.until, **fresh.until}


def _settings_print(settings: Settings, due_soon_days: int) -> str:
    try:
        program = version("hiro-monitor")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout that was never installed
        program = "unknown"
    parts = [
        program, settings.site.timezone, due_soon_days, settings.evaluation.model_dump(mode="json"),
        settings.pacs.enabled, settings.pacs.feed, settings.pacs.images_due_hours,
        settings.pacs.look_back_days,
    ]  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _parts(groups: Sequence[list[int]], size: int) -> Iterator[list[int]]:
    """Patient groups packed into parts of about ``size`` enrolments (a group is never split)."""
    part: list[int] = []
    for group in groups:
        part.extend(group)
        if len(part) >= size:
            yield part
            part = []
    if part:
        yield part


def _merged(summaries: Sequence[EvaluationSummary]) -> EvaluationSummary:
    """The summaries of a sweep's parts as one (every count of every part added up)."""
    changes, outbox = FindingChanges(), PlanChanges()
    for summary in summaries:
        for total, part in ((changes, summary.changes), (outbox, summary.outbox)):
            for name in (f.name for f in fields(total)):
                value = getattr(part, name)
                if isinstance(value, Counter):
                    getattr(total, name).update(value)
                else:
                    setattr(total, name, getattr(total, name) + value)
    evaluations = [summary.evaluation for summary in summaries]
    unknown = tuple(sorted({trial for summary in summaries for trial in summary.unknown_trials}))
    return EvaluationSummary(
        evaluation=Evaluation(
            findings=tuple(f for e in evaluations for f in e.findings),
            occurrences=tuple(o for e in evaluations for o in e.occurrences),
            planned_notifications=tuple(n for e in evaluations for n in e.planned_notifications),
            unknown_trials=unknown,
        ),
        changes=changes,
        outbox=outbox,
        scope=frozenset().union(*(summary.scope for summary in summaries)),
        unknown_trials=unknown,
    )


def _same_patients_among(enrolments: Sequence[Enrolment], ids: set[int]) -> set[int]:
    """``ids`` widened to the enrolments (of ``enrolments``) sharing an MRN with them."""
    chosen = set(ids)
    while True:
        mrns = {mrn for e in enrolments if e.id in chosen for mrn in e.mrns}
        more = {e.id for e in enrolments if e.id not in chosen and mrns.intersection(e.mrns)}
        if not more:
            return chosen
        chosen |= more


def _counts_text(changes: FindingChanges) -> str:
    parts = [
        f"{name} {sum(counter.values())}"
        for name, counter in (
            ("opened", changes.opened),
            ("reopened", changes.reopened),
            ("updated", changes.updated),
            ("resolved", changes.resolved),
        )
    ]
    return ", ".join(parts)


def evaluate_all(engine: Engine, settings: Settings, now: datetime) -> EvaluationSummary:
    """Judge every enrolment in the store at ``now`` and record the findings (see the module doc)."""
    return Evaluator(engine, settings).evaluate_all(now)


def evaluate_for_exams(
    engine: Engine, settings: Settings, exam_ids: Collection[int], now: datetime
) -> EvaluationSummary:
    """Judge only the enrolments whose MRNs match those of ``exam_ids`` and record their findings."""
    return Evaluator(engine, settings).evaluate_for_exams(exam_ids, now)


def _submission_instants(
    trial: Trial, enrolment: Enrolment, exams: ExamsByMrn, images: ImagesSeen | None
) -> list[datetime]:
    """When the enrolment's core-lab copies turn due or overdue (the judgement ends there)."""
    if trial.core_lab is None or images is None or not images.submissions:
        return []
    found: list[datetime] = []
    for exam in exams_of(enrolment, exams):
        seen = images.submissions.get(exam.id)
        if seen is not None:
            found.extend(submission_instants(trial.core_lab, seen))
    return found
