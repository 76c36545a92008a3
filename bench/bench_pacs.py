"""Benchmark of the PACS reader and poll (issue 17): a large study's check, a large PACS's poll.

    .venv/bin/python bench/bench_pacs.py [--instances 2000] [--repeat 5] [--profile]
                                         [--studies 50000] [--polls 5] [--skip-orthanc]

Prints:

1. The check of a 2,000-instance study from its metadata (issue 17 target: <= 2 s of our own
   CPU). A synthetic CT (``monitor.pacs.synthetic``: a 2-image scout, then portal venous axial
   series of at most 900 images, ``--instances`` in all) is uploaded to a local Orthanc with
   its DICOMweb plugin (``monitor/pacs/orthanc.py``; skipped with a message where Orthanc is not
   installed), the upload timed apart. Then ``DicomWebReader.study`` + ``rules.acquisition.check_study`` with
   the acquisition rules of ``examples/trials/onc-2101-recist-ct.toml`` (exam ``ct_cap``) are
   timed ``--repeat`` times: the medians of this process's CPU (``time.process_time``: the
   client only, Orthanc's CPU is its own) and of the wall time, the ratio of the CPU to the
   target, the requests, the page size, and how long Orthanc took to answer them. Over the
   target (or with ``--profile``) a cProfile of one check says where the CPU goes.
2. Polling a PACS that holds ``--studies`` studies (issue 17: bounded requests per minute):
   a fake QIDO-RS / WADO-RS metadata server on loopback (``FakePacs``) holds that many
   synthetic studies spread over the 365 days before a fixed date (deterministic; a few of
   them of the example enrolments' MRNs), and counts every request. The real
   ``monitor.dispatch.pacs_poll.poll_and_evaluate`` polls it ``--polls`` times, a minute apart
   on a ``FixedClock``, into a fresh SQLite store holding the example trials and enrolments:
   the studies listed and the requests of each poll (the first reads the research studies,
   the next ones read nothing), the requests per minute at the default interval and their
   ratio to ``max_requests_per_poll``; the same for ``look_back_days`` 0, 2 (default) and 7,
   and with the smallest budget allowed, to show where the bound is.

Nothing depends on the day it runs: the clock is fixed and the fake studies are dated from it.
Not a test: the figures are for reading (the machines are shared and noisy; run it twice).
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import csv
import gc
import io
import json
import pstats
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402  (after the path set-up, so the script runs from a checkout)
from dicomweb_client.api import DICOMwebClient  # noqa: E402
from pydicom.datadict import dictionary_VR, tag_for_keyword  # noqa: E402

from monitor.clock import FixedClock  # noqa: E402
from monitor.config import PacsSettings, Settings  # noqa: E402
from monitor.dispatch.pacs_poll import poll_and_evaluate  # noqa: E402
from monitor.evaluation import Evaluator  # noqa: E402
from monitor.pacs.orthanc import OrthancServer, orthanc_available  # noqa: E402
from monitor.pacs.poll import PacsPollResult  # noqa: E402
from monitor.pacs.reader import DicomWebReader  # noqa: E402
from monitor.pacs.synthetic import StudySpec, ct_study, datasets  # noqa: E402
from monitor.store.database import make_engine, upgrade  # noqa: E402
from rules import load_protocol  # noqa: E402
from rules.acquisition import Acquisition, check_study  # noqa: E402
from tests.monitor.trial_setup import load_examples  # noqa: E402

TARGET_CPU = 2.0  # s of our own CPU to check a 2,000-instance study (issue 17)
PROTOCOL = REPO / "examples" / "trials" / "onc-2101-recist-ct.toml"
EXAM = "ct_cap"
ENROLMENTS = REPO / "examples" / "enrolments.csv"
# The poll's fixed "now": 15:00 in New York (the default site), Tuesday 1 December 2026.
POLL_AT = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
SEED = 17
# monitor.pacs.synthetic packs pixel values (row * 8 + column + instance number) * 64 as uint16:
# an instance number above 960 overflows (struct.error), so no series of it may be longer.
MAX_SERIES_IMAGES = 900


# ---------------------------------------------------------------------------------------------
# 1. The check of a 2,000-instance study, against Orthanc


@dataclass(slots=True)
class Exchange:
    """One HTTP exchange as the reader's session saw it."""

    kind: str  # studies, series, instances, metadata
    seconds: float  # request sent to answer's headers read: about the server's time
    size: int  # bytes of the answer's body


def _kind(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")
    return path.rsplit("/", 1)[-1] or "?"


def _recording_reader(settings: PacsSettings, log: list[Exchange]) -> DicomWebReader:
    """A reader as ``monitor.pacs.reader.dicomweb_reader`` makes one (no auth), whose session
    notes every exchange in ``log``."""
    session = requests.Session()

    def note(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        log.append(Exchange(_kind(response.url), response.elapsed.total_seconds(), len(response.content)))

    session.hooks["response"].append(note)
    client = DICOMwebClient(
        url=settings.dicomweb_url.rstrip("/"), session=session, timeout=settings.request_timeout_seconds
    )
    return DicomWebReader(client, page_size=settings.page_size)


def _acquisition() -> Acquisition:
    trial = load_protocol(PROTOCOL.read_text(encoding="utf-8"), PROTOCOL.name)
    acquisition = trial.versions[-1].exams[EXAM].acquisition
    assert acquisition is not None, f"{PROTOCOL.name}: exam {EXAM} has no acquisition rules"
    return acquisition


@dataclass(slots=True)
class CheckRun:
    cpu: float
    wall: float
    requests: int
    exchanges: list[Exchange]
    deviations: int
    series: int
    images: int


def _check_once(settings: PacsSettings, acquisition: Acquisition, day: date) -> CheckRun:
    log: list[Exchange] = []
    reader = _recording_reader(settings, log)
    (listing,) = reader.studies(day, day)
    log.clear()
    before = reader.requests
    attributes = acquisition.attributes()
    cpu, wall = time.process_time(), time.perf_counter()
    study = reader.study(listing, attributes)
    conformance = check_study(acquisition, study)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return CheckRun(
        cpu=cpu,
        wall=wall,
        requests=reader.requests - before,
        exchanges=list(log),
        deviations=len(conformance.deviations),
        series=len(study.series),
        images=sum(series.instances for series in study.series),
    )


def _profile(settings: PacsSettings, acquisition: Acquisition, day: date) -> str:
    profiler = cProfile.Profile(time.process_time)  # our CPU, not the wait for the PACS
    profiler.enable()
    _check_once(settings, acquisition, day)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(15)
    return out.getvalue()


def large_ct(instances: int, day: date) -> StudySpec:
    """A CT of chest, abdomen and pelvis with ``instances`` images: the 2-image scout of
    ``ct_study``, then its portal venous axial series split into series of at most
    ``MAX_SERIES_IMAGES`` images (1.25, 2.5, 5 mm reconstructions ...)."""
    base = ct_study(patient_id="BENCH-CT-0001", accession="BENCHACC-0001", study_date=day)
    scout, axial = base.series
    left, series = instances - scout.instances, [scout]
    while left > 0:
        thickness = (1.25, 2.5, 5.0)[(len(series) - 1) % 3]
        part = min(left, MAX_SERIES_IMAGES)
        series.append(
            replace(
                axial,
                series_number=len(series) + 1,
                description=f"PORTAL VENOUS {thickness:g}mm",
                slice_thickness=thickness,
                instances=part,
            )
        )
        left -= part
    return replace(base, series=tuple(series))


def bench_large_study(instances: int, repeat: int, profile: bool) -> None:
    print(f"1. Check of a {instances:,}-instance study from its metadata (target <= {TARGET_CPU:g} s CPU)")
    reason = orthanc_available()
    if reason is not None:
        print(f"   skipped: {reason}")
        return
    acquisition = _acquisition()
    day = POLL_AT.date()
    spec = large_ct(instances, day)
    with OrthancServer() as server:
        started = time.perf_counter()
        made = list(datasets(spec))
        making = time.perf_counter() - started
        started = time.perf_counter()
        stored = server.store(made)
        upload = time.perf_counter() - started
        del made  # 2,000 datasets kept alive would make each garbage collection in the checks dearer
        gc.collect()
        print(
            f"   synthetic CT: {stored:,} instances made in {making:.1f} s; uploaded to Orthanc "
            f"(POST /instances, one by one) in {upload:.1f} s ({stored / upload:,.0f} instances/s)"
        )
        for page_size in (PacsSettings().page_size, 5000):
            settings = PacsSettings(enabled=True, dicomweb_url=server.dicomweb_url, page_size=page_size)
            runs = [_check_once(settings, acquisition, day) for _ in range(repeat)]
            _report_check(runs, page_size, default=page_size == PacsSettings().page_size)
            if page_size == PacsSettings().page_size and (
                profile or statistics.median(r.cpu for r in runs) > TARGET_CPU
            ):
                print("   cProfile of one check (CPU, by own time):")
                print("\n".join(f"     {line}" for line in _profile(settings, acquisition, day).splitlines()))


def _report_check(runs: list[CheckRun], page_size: int, *, default: bool) -> None:
    cpu = statistics.median(r.cpu for r in runs)
    wall = statistics.median(r.wall for r in runs)
    first = runs[0]
    kinds = Counter(e.kind for e in first.exchanges)
    by_kind: dict[str, float] = {}
    for exchange in first.exchanges:
        by_kind[exchange.kind] = by_kind.get(exchange.kind, 0.0) + exchange.seconds
    served = statistics.median(sum(e.seconds for e in r.exchanges) for r in runs)
    size = sum(e.size for e in first.exchanges)
    empty = sum(1 for e in first.exchanges if e.kind == "instances" and e.size <= len(b"[]"))
    label = "default" if default else "the largest allowed"
    print(f"   page size {page_size} ({label}), {len(runs)} runs:")
    print(
        f"     our CPU   median {cpu:.3f} s (min {min(r.cpu for r in runs):.3f}, "
        f"max {max(r.cpu for r in runs):.3f})  = {cpu / TARGET_CPU:.2f} x the {TARGET_CPU:g} s target"
    )
    print(
        f"     wall      median {wall:.3f} s, of which Orthanc answering (request to headers) {served:.3f} s"
    )
    print(
        f"     requests  {first.requests} per check: "
        + ", ".join(f"{count} {kind} ({by_kind[kind]:.3f} s)" for kind, count in sorted(kinds.items()))
        + f"; {size / 1e6:.2f} MB of DICOM JSON"
        + (f"; {empty} page(s) empty (the images a multiple of the page size)" if empty else "")
    )
    print(
        f"     study     {first.series} series, {first.images:,} images; "
        f"{first.deviations} deviations from the rules"
    )


# ---------------------------------------------------------------------------------------------
# 2. Polling a PACS of 50,000 studies, against a fake DICOMweb server


@dataclass(frozen=True, slots=True)
class FakeStudy:
    uid: str
    accession: str
    patient_id: str
    day: date
    modality: str
    series: int
    per_series: int  # images in each series

    @property
    def instances(self) -> int:
        return self.series * self.per_series


def _element(keyword: str, *values: Any) -> tuple[str, dict[str, Any]]:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    found: dict[str, Any] = {"vr": dictionary_VR(tag)}
    if values:
        found["Value"] = list(values)
    return f"{tag:08X}", found


def _dataset(*elements: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return dict(elements)


def enrolled_mrns() -> list[str]:
    """The MRNs of the example enrolments (``examples/enrolments.csv``)."""
    with ENROLMENTS.open(encoding="utf-8", newline="") as file:
        return sorted({mrn for row in csv.DictReader(file) for mrn in row["mrn"].split("|") if mrn})


def synthetic_studies(count: int, today: date, mrns: list[str]) -> list[FakeStudy]:
    """``count`` studies over the 365 days up to ``today``: one in 500 of an enrolled patient, and
    two of enrolled patients on each of today and the two days before (what the first poll reads)."""
    rng = random.Random(SEED)
    found: list[FakeStudy] = []
    for number in range(count):
        research = number < 6 or number % 500 == 250
        ago = number // 2 if number < 6 else rng.randrange(365)
        modality = rng.choice(("CT", "CT", "CT", "MR", "MR", "PT", "CR", "US"))
        found.append(
            FakeStudy(
                uid=f"2.25.{SEED}{number:07d}",
                accession=f"FAKE{number:07d}",
                patient_id=mrns[number % len(mrns)] if research else f"FAKEPID{rng.randrange(10**7):07d}",
                day=today - timedelta(days=ago),
                modality=modality,
                series=rng.randint(1, 4),
                per_series=rng.randint(1, 5),
            )
        )
    return found


class FakePacs:
    """The studies a fake QIDO-RS server answers for, by date, and the requests it got."""

    def __init__(self, studies: list[FakeStudy]) -> None:
        self.studies = sorted(studies, key=lambda s: (s.day, s.uid))
        self.days = [s.day for s in self.studies]
        self.by_uid = {s.uid: s for s in self.studies}
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def between(self, first: date, last: date) -> list[FakeStudy]:
        return self.studies[bisect.bisect_left(self.days, first) : bisect.bisect_right(self.days, last)]

    def answer(self, path: str, query: Mapping[str, list[str]]) -> list[dict[str, Any]] | None:
        """The DICOM JSON for a GET of ``path`` (below the DICOMweb root), None if not found."""
        parts = [part for part in path.split("/") if part]
        if parts == ["studies"]:
            self.count("studies")
            return _page(self._listing(query), query)
        if len(parts) < 3 or parts[0] != "studies" or parts[1] not in self.by_uid:
            self.count("other")
            return None
        study = self.by_uid[parts[1]]
        if parts[2:] == ["series"]:
            self.count("series")
            return [_series_json(study, number) for number in range(1, study.series + 1)]
        if parts[2:] == ["instances"]:
            self.count("instances")
            images = [
                _instance_json(study, series, image)
                for series in range(1, study.series + 1)
                for image in range(1, study.per_series + 1)
            ]
            return _page(images, query)
        if len(parts) == 7 and parts[2] == "series" and parts[4] == "instances" and parts[6] == "metadata":
            self.count("metadata")
            series = int(parts[3].rsplit(".", 1)[-1])
            return [_instance_json(study, series, 1, metadata=True)]
        self.count("other")
        return None

    def _listing(self, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        wanted = query.get("StudyDate", [""])[0]
        first, _, last = wanted.partition("-")
        if not first:
            return []
        days = [date(int(d[0:4]), int(d[4:6]), int(d[6:8])) for d in (first, last or first)]
        return [_study_json(study) for study in self.between(days[0], days[1])]


def _page(items: list[dict[str, Any]], query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    offset = int(query.get("offset", ["0"])[0])
    limit = query.get("limit", [""])[0]
    return items[offset : offset + int(limit)] if limit else items[offset:]


def _study_json(study: FakeStudy) -> dict[str, Any]:
    return _dataset(
        _element("StudyInstanceUID", study.uid),
        _element("AccessionNumber", study.accession),
        _element("PatientID", study.patient_id),
        _element("StudyDate", f"{study.day:%Y%m%d}"),
        _element("ModalitiesInStudy", study.modality),
        _element("NumberOfStudyRelatedInstances", study.instances),
        _element("NumberOfStudyRelatedSeries", study.series),
    )


def _series_json(study: FakeStudy, number: int) -> dict[str, Any]:
    return _dataset(
        _element("SeriesInstanceUID", f"{study.uid}.{number}"),
        _element("SeriesNumber", number),
        _element("SeriesDescription", f"FAKE SERIES {number}"),
        _element("Modality", study.modality),
        _element("NumberOfSeriesRelatedInstances", study.per_series),
    )


def _instance_json(study: FakeStudy, series: int, image: int, *, metadata: bool = False) -> dict[str, Any]:
    found = _dataset(
        _element("SeriesInstanceUID", f"{study.uid}.{series}"),
        _element("SOPInstanceUID", f"{study.uid}.{series}.{image}"),
        _element("SeriesDescription", f"FAKE SERIES {series}"),
        _element("Modality", study.modality),
        _element("ImageType", "ORIGINAL", "PRIMARY", "AXIAL"),
        _element("SliceThickness", 2.5),
        _element("KVP", 120),
        _element("ContrastBolusAgent", "IOHEXOL"),
        _element("AcquisitionTime", "094500"),
        _element("Manufacturer", "SYNTHETIC"),
        _element("ManufacturerModelName", "FAKE SCANNER"),
        _element("StationName", "FAKE01"),
        _element("DeviceSerialNumber", "SYN-0001"),
    )
    if metadata:
        key, sequence = _element("RadiopharmaceuticalInformationSequence")
        sequence["Value"] = [_dataset(_element("RadiopharmaceuticalStartTime", "084500"))]
        found[key] = sequence
    return found


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a PACS would
    # Headers and body go out in two writes: without this, Nagle's algorithm and the client's
    # delayed ACK hold every keep-alive answer back by some 40 ms.
    disable_nagle_algorithm = True
    server: FakePacsServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        root = "/dicom-web"
        path = parts.path[len(root) :] if parts.path.startswith(root) else "/?"
        answer = self.server.pacs.answer(path, parse_qs(parts.query))
        body = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(404 if answer is None else 200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class FakePacsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pacs: FakePacs) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pacs = pacs
        self.dicomweb_url = f"http://127.0.0.1:{self.server_address[1]}/dicom-web"


@contextmanager
def serving(pacs: FakePacs) -> Iterator[FakePacsServer]:
    server = FakePacsServer(pacs)
    thread = threading.Thread(target=server.serve_forever, name="fake-pacs", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(slots=True)
class PollRun:
    result: PacsPollResult
    served: Counter[str]  # requests the server got during the poll, by kind
    wall: float


def poll_series(url: str, pacs: FakePacs, polls: int, **pacs_settings: Any) -> list[PollRun]:
    """``polls`` polls a minute apart into a fresh store with the example registry."""
    with tempfile.TemporaryDirectory(prefix="hiro-bench-pacs-") as folder:
        database = f"sqlite:///{Path(folder) / 'store.db'}"
        engine = make_engine(database)
        try:
            upgrade(engine)
            load_examples(engine, POLL_AT - timedelta(days=7))
            settings = Settings.model_validate(
                {
                    "database": {"url": database},
                    "pacs": {"enabled": True, "dicomweb_url": url, **pacs_settings},
                }
            )
            evaluator = Evaluator(engine, settings)
            clock = FixedClock(POLL_AT)
            runs: list[PollRun] = []
            for _ in range(polls):
                before = pacs.snapshot()
                started = time.perf_counter()
                result = poll_and_evaluate(engine, settings, evaluator, clock=clock)
                wall = time.perf_counter() - started
                if not result.ok:
                    raise RuntimeError(f"the poll failed: {result.error}")
                runs.append(PollRun(result, pacs.snapshot() - before, wall))
                clock.advance(seconds=settings.pacs.poll_interval_seconds)
            return runs
        finally:
            engine.dispose()


def _served(counts: Counter[str]) -> str:
    kinds = ("studies", "series", "instances", "metadata", "other")
    return ", ".join(f"{counts[kind]} {kind}" for kind in kinds if counts[kind])


def bench_large_pacs(count: int, polls: int) -> None:
    defaults = PacsSettings()
    per_minute = 60 / defaults.poll_interval_seconds
    print()
    print(
        f"2. Polling a PACS of {count:,} studies (fake QIDO-RS on loopback; default page size "
        f"{defaults.page_size}, budget {defaults.max_requests_per_poll} requests per poll, "
        f"one poll per {defaults.poll_interval_seconds} s)"
    )
    zone = ZoneInfo(Settings().site.timezone)
    today = POLL_AT.astimezone(zone).date()
    mrns = enrolled_mrns()
    studies = synthetic_studies(count, today, mrns)
    pacs = FakePacs(studies)
    research = sum(s.patient_id in set(mrns) for s in studies)
    print(
        f"   studies in the PACS: {len(studies):,} over {today - timedelta(days=364)}..{today} "
        f"({len(studies) / 365:.0f} a day), {research} of them of enrolled patients; "
        f"polls at {POLL_AT:%Y-%m-%d %H:%M} UTC"
    )
    with serving(pacs) as server:
        runs = poll_series(server.dicomweb_url, pacs, polls)
        first, *rest = runs
        print(f"   look_back_days {defaults.look_back_days} (default), {polls} polls a minute apart:")
        for number, run in enumerate(runs, 1):
            r = run.result
            print(
                f"     poll {number}: listed {r.listed}, read {r.read} (matched {r.matched}), "
                f"{r.requests} requests [{_served(run.served)}], {run.wall * 1000:.0f} ms wall"
            )
        steady = statistics.median(run.result.requests for run in rest) if rest else first.result.requests
        budget = defaults.max_requests_per_poll
        print(
            f"     requests per minute: first poll {first.result.requests * per_minute:g}, then "
            f"{steady * per_minute:g} ({steady / budget:.3f} x the budget of {budget}; "
            f"first poll {first.result.requests / budget:.3f} x)"
        )
        print(
            f"     the server counted {sum(run.served.total() for run in runs)} requests for "
            f"{sum(run.result.requests for run in runs)} the reader counted"
        )
        print("   look_back_days  listed  pages  first poll  next polls  req/min (next)  x budget")
        for days in (0, 2, 7):
            found = poll_series(server.dicomweb_url, pacs, 2, look_back_days=days)
            listed = found[0].result.listed
            pages = found[1].served["studies"]
            print(
                f"   {days:>14}  {listed:>6}  {pages:>5}  {found[0].result.requests:>10}  "
                f"{found[1].result.requests:>10}  {found[1].result.requests * per_minute:>14g}  "
                f"{found[0].result.requests / defaults.max_requests_per_poll:>8.3f}"
            )
        smallest = PacsSettings.model_fields["max_requests_per_poll"].metadata
        least = next(item.ge for item in smallest if hasattr(item, "ge"))
        tight = poll_series(server.dicomweb_url, pacs, 3, look_back_days=7, max_requests_per_poll=least)
        print(
            f"   with the smallest budget ({least}) and look_back_days 7: "
            + "; ".join(
                f"poll {n}: {run.result.requests} requests, read {run.result.read}, {run.result.waiting} wait"
                for n, run in enumerate(tight, 1)
            )
        )
        worst = -(-len(pacs.between(today - timedelta(days=30), today)) // defaults.page_size)
        print(
            "   bound per poll: every listing page of the look-back is fetched (they count toward "
            "max_requests_per_poll but are not stopped by it), then studies are read while fewer "
            "than max_requests_per_poll requests were made, the last one overshooting by at most "
            "its own requests (series + instance pages + one metadata per series); so <= "
            f"max(pages, {budget} - 1) + one study's requests per poll, i.e. per minute at the "
            f"default interval; at the largest look_back_days (30) here: {worst} pages"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=2000, help="images in the large study")
    parser.add_argument("--repeat", type=int, default=5, help="checks timed (the median is printed)")
    parser.add_argument("--profile", action="store_true", help="profile a check even under the target")
    parser.add_argument("--studies", type=int, default=50_000, help="studies in the fake PACS")
    parser.add_argument("--polls", type=int, default=5, help="polls in a row, a minute apart")
    parser.add_argument("--skip-orthanc", action="store_true", help="only the poll of the fake PACS")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if not args.skip_orthanc:
        bench_large_study(args.instances, args.repeat, args.profile)
    bench_large_pacs(args.studies, args.polls)
    print(f"\n(ran in {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
