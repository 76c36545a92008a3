"""Reading study metadata from a PACS over DIMSE: C-FIND (pynetdicom), never pixel data.

:class:`DimseReader` reads what :class:`~monitor.pacs.reader.DicomWebReader` reads, for a PACS
without DICOMweb, with the Study Root Query/Retrieve Information Model - FIND:

- :meth:`~DimseReader.studies`: one C-FIND at STUDY level on the StudyDate range;
- :meth:`~DimseReader.study`: one at SERIES level (the series and their instance counts),
  then one at IMAGE level per series (the hierarchical query every PACS answers) with the
  attributes the rules name as return keys, reduced to each series' distinct values;
- :meth:`~DimseReader.ping` (``hiro-monitor check-config``): one association proposing
  Verification and the Study Root C-FIND, and a C-ECHO over it: the PACS answers, knows our
  AE titles (and trusts our TLS certificate) and accepts our queries. No query is sent.

Each call opens one association and releases it before it returns; the association and
each C-FIND (or C-ECHO) count as one request (:attr:`~DimseReader.requests`), for the poll's budget.
The answers are put in the DICOM JSON model (pydicom's ``to_json_dict``, numbers as numbers,
as a DICOMweb server sends them) and read by the functions that read QIDO-RS answers: the
values are the same whichever the protocol (``"120"`` for 120.0, ``"2.5"``, several values
as a tuple, an empty one as ``()``), and so is :func:`rules.acquisition.check_study`.

What C-FIND cannot be relied on for:

- attributes inside a sequence (``RadiopharmaceuticalStartTime``, ``RadionuclideTotalDose``,
  ``Radiopharmaceutical``: a PET uptake rule). They are asked for as a zero-length sequence
  return key (every item) and, as over DICOMweb, read from the first item in the first
  image of each series. Orthanc answers with the whole sequence; a PACS that answers it empty
  or not at all (many do: sequence return keys are optional) leaves the series without
  them, and an uptake rule then fails for want of an injection time: such a PACS needs
  ``protocol = "dicomweb"`` for PET uptake rules.
- return keys the PACS does not keep in its database: some answer them empty (Orthanc with
  ``StorageAccessOnFind = "Never"``), and the images then look as if they lacked them.
- paging: there is none, the PACS sends every match (``page_size`` does not apply); a PACS
  that caps its matches (Orthanc's ``LimitFindInstances``) cuts a series short.

Timeouts, each ``request_timeout_seconds``: the TCP connection, the association (ACSE), each
C-FIND answer (DIMSE) and network silence. Errors are :class:`~monitor.pacs.reader.PacsError`,
naming the kind of failure (the PACS's rejection reason, the C-FIND status), never a query;
pynetdicom's logging of queries and answers (PHI) is off.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, _config, build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ
from pynetdicom.status import STATUS_PENDING, STATUS_SUCCESS, STATUS_WARNING, code_to_category

from monitor.config import ConfigError, PacsSettings
from monitor.pacs.reader import (
    _IN_SEQUENCE,
    _SERIES_FIELDS,
    _STUDY_FIELDS,
    PacsError,
    StudyListing,
    _element,
    _listing,
    _text,
    _values,
    study_seen,
)
from rules.acquisition import StudySeen

__all__ = ["DimseReader", "dimse_reader"]

log = logging.getLogger("monitor.pacs")
# pynetdicom logs every query and answer at INFO: they name patients, accessions and dates.
logging.getLogger("pynetdicom").setLevel(logging.WARNING)
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False

_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")  # Study Root Query/Retrieve Information Model - FIND
_ECHO = UID("1.2.840.10008.1.1")  # Verification (C-ECHO)
_SERVICES = {_FIND: "Study Root C-FIND", _ECHO: "C-ECHO (Verification)"}
_TIMED_OUT = 0.9  # of the timeout: a failure after that long without an answer is a timeout

Answer = dict[str, Any]  # one C-FIND answer in the DICOM JSON model


class _Watch:
    """What one association saw (pynetdicom's events), to tell its failures apart."""

    def __init__(self) -> None:
        self.connected = False
        self.answered = False  # any PDU from the PACS
        self.accepted = False  # an A-ASSOCIATE-AC
        self.peer_aborted = False
        self.we_aborted = False
        # An A-ASSOCIATE-RJ's reason as it arrived: the PACS may close the connection right
        # behind it, before the association has taken it in (then is_rejected stays False).
        self.rejected: str | None = None
        self.since = time.monotonic()  # the last request or answer

    def handlers(self) -> list[EventHandlerType]:
        return [
            (evt.EVT_CONN_OPEN, self._opened),
            (evt.EVT_PDU_RECV, self._received),
            (evt.EVT_PDU_SENT, self._sent),
        ]

    def _opened(self, _: Event) -> None:
        self.connected = True

    def _received(self, event: Event) -> None:
        self.answered = True
        self.since = time.monotonic()
        self.accepted |= isinstance(event.pdu, A_ASSOCIATE_AC)
        self.peer_aborted |= isinstance(event.pdu, A_ABORT_RQ)
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            self.rejected = str(event.pdu.reason_str or "no reason given")

    def _sent(self, event: Event) -> None:
        self.we_aborted |= isinstance(event.pdu, A_ABORT_RQ)

    def silent_for(self, timeout: float) -> bool:
        return time.monotonic() - self.since >= timeout * _TIMED_OUT


@dataclass(frozen=True, slots=True)
class _Link:
    """An established association and what it saw."""

    association: Association
    watch: _Watch


class DimseReader:
    """Reads one PACS over DIMSE C-FIND. Not thread-safe (one per poll)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        called_ae: str,
        calling_ae: str,
        timeout: float,
        tls: tuple[ssl.SSLContext, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.called_ae = called_ae
        self.timeout = timeout
        self.tls = tls
        self.ae = AE(ae_title=calling_ae)
        self.ae.connection_timeout = timeout
        self.ae.acse_timeout = timeout
        self.ae.dimse_timeout = timeout
        self.ae.network_timeout = timeout
        self.requests = 0

    def ping(self) -> None:
        """One association with our AE titles (and TLS) proposing the Study Root C-FIND and
        Verification, and a C-ECHO over it: the PACS answers, knows us and accepts our queries."""
        with self._association((_FIND, _ECHO)) as link:
            accepted = {context.abstract_syntax for context in link.association.accepted_contexts}
            for uid in (_FIND, _ECHO):
                if uid not in accepted:
                    raise PacsError(f"the PACS accepts no {_SERVICES[uid]} from this AE")
            self._echo(link)

    def studies(self, first_day: date, last_day: date) -> Iterator[StudyListing]:
        """The studies dated ``first_day`` to ``last_day`` (both included)."""
        query = _query("STUDY", _STUDY_FIELDS, StudyDate=f"{first_day:%Y%m%d}-{last_day:%Y%m%d}")
        with self._association() as link:
            answers = self._find(link, query)
        for answer in answers:
            listing = _listing(answer)
            if listing is not None:
                yield listing

    def study(self, listing: StudyListing, attributes: Collection[str]) -> StudySeen:
        """``listing``'s series, each with the distinct values its images carry for ``attributes``."""
        flat = sorted(name for name in attributes if name not in _IN_SEQUENCE)
        nested = sorted(name for name in attributes if name in _IN_SEQUENCE)
        sequences = sorted({_IN_SEQUENCE[name] for name in nested})
        values: dict[str, dict[str, set[tuple[str, ...]]]] = {}
        with self._association() as link:
            series = {
                uid: found
                for found in self._find(link, _query("SERIES", _SERIES_FIELDS, StudyInstanceUID=listing.uid))
                if (uid := _text(found, "SeriesInstanceUID"))
            }
            for uid in series:
                query = _query("IMAGE", flat, sequences, StudyInstanceUID=listing.uid, SeriesInstanceUID=uid)
                images = [i for i in self._find(link, query) if _text(i, "SeriesInstanceUID") == uid]
                values[uid] = _distinct(images, flat, nested)
        return study_seen(listing, series, values)

    @contextmanager
    def _association(self, services: Sequence[UID] = (_FIND,)) -> Iterator[_Link]:
        """One association with the PACS proposing ``services`` (SOP classes), released at the
        end (aborted after an error)."""
        self.requests += 1
        watch = _Watch()
        try:
            association = self.ae.associate(
                self.host,
                self.port,
                contexts=[build_context(uid) for uid in services],
                ae_title=self.called_ae,
                tls_args=self.tls,
                evt_handlers=watch.handlers(),
            )
        except OSError:  # the host name does not resolve
            raise PacsError("the PACS cannot be reached (its host name does not resolve)") from None
        if not association.is_established:
            raise self._not_associated(association, watch, services)
        try:
            yield _Link(association, watch)
        except BaseException:
            association.abort()
            raise
        association.release()

    def _not_associated(self, association: Association, watch: _Watch, services: Sequence[UID]) -> PacsError:
        if not watch.connected:
            tls = " (or the TLS handshake failed)" if self.tls else ""
            return PacsError(f"the PACS cannot be reached{tls}")
        if association.is_rejected or watch.rejected is not None:
            answer = association.acceptor.primitive if association.is_rejected else None
            reason = answer.reason_str if answer is not None else watch.rejected or "no reason given"
            return PacsError(f"the PACS rejected the association: {reason}")
        if watch.accepted:  # but none of the services proposed
            wanted = " nor ".join(_SERVICES[uid] for uid in services)
            return PacsError(f"the PACS accepts no {wanted} from this AE")
        return self._broken(watch)

    def _broken(self, watch: _Watch) -> PacsError:
        """The association failed without a (final) answer: why, as far as can be told."""
        if watch.peer_aborted:
            return PacsError("the PACS aborted the association (does it allow this AE to query?)")
        if watch.silent_for(self.timeout):
            return PacsError("the PACS did not answer in time")
        if watch.we_aborted:
            return PacsError("the PACS answered what is not DICOM")
        if self.tls and not watch.answered:  # TLS 1.3: a refused client certificate shows here
            return PacsError("the PACS closed the connection (does it trust our TLS certificate?)")
        return PacsError("the PACS closed the connection")

    def _echo(self, link: _Link) -> None:
        """One C-ECHO: success, or why not."""
        self.requests += 1
        watch = link.watch
        watch.since = time.monotonic()
        try:
            status = link.association.send_c_echo()
        except (RuntimeError, ValueError):  # the association ended meanwhile
            raise self._broken(watch) from None
        code = status.get("Status")
        if not isinstance(code, int):  # pynetdicom's sign of a timeout, abort or garbage
            raise self._broken(watch)
        if code != 0x0000:
            raise PacsError(f"the PACS refused the C-ECHO (status 0x{code:04X})")

    def _find(self, link: _Link, query: Dataset) -> list[Answer]:
        """Every match of one C-FIND, in the DICOM JSON model."""
        self.requests += 1
        watch = link.watch
        watch.since = time.monotonic()
        answers: list[Answer] = []
        try:
            responses = link.association.send_c_find(query, _FIND)
        except (RuntimeError, ValueError):  # the association ended meanwhile
            raise self._broken(watch) from None
        for status, identifier in responses:
            code = status.get("Status")
            if not isinstance(code, int):  # pynetdicom's sign of a timeout, abort or garbage
                raise self._broken(watch)
            category = code_to_category(code)
            if category == STATUS_PENDING:
                if identifier is None:  # undecodable
                    raise PacsError("the PACS answered what is not DICOM")
                answers.append(_answer(identifier))
            elif category in (STATUS_SUCCESS, STATUS_WARNING):
                if category == STATUS_WARNING:
                    log.warning("the PACS ended a C-FIND with warning status 0x%04X", code)
                return answers
            else:
                raise PacsError(f"the PACS refused a query (C-FIND status 0x{code:04X}, {category.lower()})")
        raise self._broken(watch)


def dimse_reader(settings: PacsSettings) -> DimseReader:
    """A reader of ``settings.host``:``settings.port`` with the configured AE titles, timeout and TLS."""
    tls = None
    if settings.tls:
        try:
            context = ssl.create_default_context(cafile=settings.ca_file or None)
            if settings.certificate_file:
                context.load_cert_chain(settings.certificate_file, settings.private_key_file)
        except OSError as exc:  # ssl.SSLError too
            raise ConfigError(
                f"pacs.ca_file, certificate_file, private_key_file: cannot be used ({exc.strerror or exc})"
            ) from None
        tls = (context, settings.host)
    return DimseReader(
        settings.host,
        settings.port,
        called_ae=settings.called_ae,
        calling_ae=settings.calling_ae,
        timeout=settings.request_timeout_seconds,
        tls=tls,
    )


def _query(level: str, keys: Collection[str], sequences: Collection[str] = (), **match: str) -> Dataset:
    """A C-FIND identifier: ``keys`` to return (empty), ``sequences`` to return whole (zero
    length: every item), ``match`` to match."""
    query = Dataset()
    query.QueryRetrieveLevel = level
    for keyword in keys:
        if tag_for_keyword(keyword) is not None:
            setattr(query, keyword, None)
    for keyword in sequences:
        setattr(query, keyword, [])
    for keyword, value in match.items():
        setattr(query, keyword, value)
    return query


def _answer(identifier: Dataset) -> Answer:
    """A C-FIND answer in the DICOM JSON model; an element whose value is not valid for its VR
    is left out (as if the image lacked it) rather than failing the poll."""
    try:
        return identifier.to_json_dict(suppress_invalid_tags=True)
    except Exception:  # pydicom raises many kinds for a malformed dataset
        raise PacsError("the PACS answered what is not DICOM") from None


def _distinct(images: list[Answer], flat: list[str], nested: list[str]) -> dict[str, set[tuple[str, ...]]]:
    """One series' distinct values per attribute; those inside sequences from its first image."""
    found: dict[str, set[tuple[str, ...]]] = {}
    for image in images:
        for name in flat:
            found.setdefault(name, set()).add(_values(image, name))
    for name in nested if images else ():
        items = _element(images[0], _IN_SEQUENCE[name]).get("Value", [])
        if isinstance(items, list) and items and isinstance(items[0], dict):
            found[name] = {_values(items[0], name)}
    return found
