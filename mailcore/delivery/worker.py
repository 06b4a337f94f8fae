"""One delivery run: claim due rows, send them (one transaction per message and domain), record, notify.

The same code runs in a Celery task (`mailcore.tasks`) and in runmail's
in-process runner (`mailcore.delivery.runner`). Connections stay open for the
run, so several messages to one domain share one SMTP session. The envelope
sender's domain picks the transport of each message (`transport.py`): direct
to MX, the smarthost, or an ESP's API (`esp.py`).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable

from django.utils import timezone

from mailcore import dns as maildns
from mailcore import logs, metrics, store
from mailcore.conf import conf
from mailcore.delivery import claims, dkim, dsn, esp, mtasts, pool, transport
from mailcore.delivery.client import Connection, Deadline, Verified, longest_transaction, too_many_recipients
from mailcore.delivery.mx import MXHost, mx_names, usable_hosts
from mailcore.delivery.outcome import DELIVERED, DeliveryError, Outcome, temporary
from mailcore.dsnparams import RecipientRequest, Request
from mailcore.models import OutboundMessage, OutboundRecipient

log = logging.getLogger(__name__)

R = OutboundRecipient
# RFC 5321 §4.5.3.1.8 lets a client send 100 recipients per transaction at least.
MAX_RECIPIENTS_PER_TRANSACTION = 100
MAX_TRANSACTIONS_PER_CONNECTION = 500  # then reconnect, so one domain cannot hold a worker forever
DRAIN_BATCH = 50
DUE_LOOKS = 5  # Run.due: domains tried when another run took the rows first
# Results of up to this many transactions (or of RECORD_SECONDS) are written in one database transaction.
# A worker killed before writing them re-sends them after the lease expires (the one duplicate window).
# Signed messages a run keeps for their next recipient domain. A run may drain hundreds of messages
# to one domain over one connection; keeping every one it signed held them all in memory at once.
PREPARED_BYTES = 32 * 1024 * 1024
RECORD_BATCH = 20
RECORD_SECONDS = 1.0
# message, rows, outcomes, transport, whether the receiver took the DSN request (RFC 3461)
_Sent = tuple[OutboundMessage, list[OutboundRecipient], dict[str, Outcome], str, bool]


def new_owner() -> str:
    """A lease owner id unique to this run: host, process, random."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Run:
    """Delivers claimed rows; keeps one connection per destination (MX or smarthost) while it lasts."""

    def __init__(self) -> None:
        self.owner = new_owner()
        self.connections: dict[str, Connection] = {}  # by destination (see _destination)
        self.routes: dict[str, str] = {}  # recipient domain -> destination of its last SMTP transaction
        self.unreachable: dict[str, Outcome] = {}  # destination -> why no connection to it could be had in this run
        self.transports: dict[str, str] = {}  # sender domain -> transport (one lookup per run)
        self.esp = esp.EspSession()
        self.prepared: dict[int, bytes] = {}  # by message id, oldest first (see _prepared)
        self.prepared_bytes = 0
        self.dkim_keys: dict[str, dkim.DkimKey] | None = None
        self.delivered = 0
        self.unfinished: set[str] = set()  # domains drain() left with due mail (see wake: woken again)
        self.unrecorded: list[_Sent] = []  # sent, results not yet written (see RECORD_BATCH)
        self.unrecorded_since = 0.0

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        for destination, connection in self.connections.items():
            pool.checkin(destination, connection)  # kept for the next run in this process
        self.connections.clear()
        self.esp.close()
        pool.close_idle()

    # Claim and deliver -----------------------------------------------------

    def message(self, message_id: int | None, domains: Iterable[str] | None = None) -> int:
        """Deliver what is due of one message (when given) and of `domains`; then drain them while connections last.

        Without `domains`, those of the message's own rows. Domains that could
        not be drained to the end are left in `self.unfinished`.
        """
        wanted = list(dict.fromkeys(domains)) if domains is not None else []
        limit = claims.CLAIM_BATCH if message_id is not None else DRAIN_BATCH  # a message's rows all at once
        rows = claims.claim(self.owner, message_id=message_id, domains=wanted, limit=limit)
        self.deliver(rows)
        # A claim short of its limit took everything of `wanted` that was due: no need to ask again.
        more = domains is None or len(rows) >= limit
        for domain in wanted or dict.fromkeys(r.domain for r in rows):
            if not self._drain(domain, more):
                self.unfinished.add(domain)
        return self.delivered

    def due(self, limit: int = claims.CLAIM_BATCH) -> int:
        """Deliver due rows of the domain that has waited longest; returns how many rows were handled (0: none due).

        Runs started together all see the same longest-waiting domain; those that
        find its rows taken look again (the taken rows are no longer due), rather
        than report nothing due while other domains wait.
        """
        for _ in range(DUE_LOOKS):
            domain = claims.next_due_domain()
            if domain is None:
                return 0
            rows = claims.claim(self.owner, domain=domain, limit=limit)
            if rows:
                self.deliver(rows)
                if self.routes.get(domain) in self.unreachable:
                    self._drain(domain)  # the rest of its due mail waits for its retry time too
                return len(rows)
        return 0

    def _drain(self, domain: str, more: bool = True) -> bool:
        """Due mail to `domain` over the run's connection to it, until a claim comes back short of its limit.

        True when nothing due is left; False when the connection broke or wore out first. When no connection
        to the domain could be had, its due mail is claimed on and deferred with that reply (`_connection`),
        as Postfix defers a dead destination's queue: it waits for its retry time, not for another run
        to try it message by message.
        """
        first = domain not in self.routes  # nothing sent there in this run yet: one message opens the way
        while more and (first or self._reusable(domain) or self.routes.get(domain) in self.unreachable):
            limit = 1 if first else DRAIN_BATCH
            rows = claims.claim(self.owner, domain=domain, limit=limit)
            self.deliver(rows)
            more, first = len(rows) >= limit, False
        return not more

    def _reusable(self, domain: str) -> bool:
        connection = self.connections.get(self.routes.get(domain, ""))
        return bool(connection and not connection.broken and connection.transactions < MAX_TRANSACTIONS_PER_CONNECTION)

    def deliver(self, rows: list[OutboundRecipient]) -> None:
        """One transaction per message and route: per recipient domain over SMTP, all recipients for an ESP.

        Results are written in batches (`record`), and always before this returns.
        """
        groups: dict[tuple[int, str, str], list[OutboundRecipient]] = defaultdict(list)
        for row in rows:
            way = transport.for_sender(row.message.sender, self.transports)
            groups[(row.message_id, way, "" if way == transport.ANYMAIL else row.domain)].append(row)
        try:
            for (_, way, domain), group in groups.items():
                for start in range(0, len(group), MAX_RECIPIENTS_PER_TRANSACTION):
                    self._transaction(way, domain, group[start : start + MAX_RECIPIENTS_PER_TRANSACTION])
        finally:
            self.record()

    def _transaction(self, way: str, domain: str, rows: list[OutboundRecipient]) -> None:
        """One message to `rows` (one domain's, or the ESP's). A receiver that takes fewer recipients per
        transaction than we send answers the rest `452 4.5.3` (RFC 5321 §4.5.3.1.10); once it has taken the
        message for the others, the rest go in the next transaction at once, not after a retry delay."""
        while rows:
            rows = self._one_transaction(way, domain, rows)

    def _one_transaction(self, way: str, domain: str, rows: list[OutboundRecipient]) -> list[OutboundRecipient]:
        """Send, and note the outcomes to record; returns the rows to send again at once (see `_transaction`)."""
        message = rows[0].message
        seconds = longest_transaction(message.size)
        rows = self._leased_through(rows, seconds)
        if not rows:
            return []
        deadline = Deadline.after(seconds)
        rcpts = [r.address for r in rows]
        passed = False
        try:
            if way == transport.ANYMAIL:
                # Unsigned: the ESP rebuilds the message and signs it itself.
                outcomes = self.esp.send(store.read_blob(message.blob), message.sender, rcpts)
            else:
                outcomes, passed = self._send(way, domain, message, rows, self._prepared(message), deadline)
        except DeliveryError as err:
            outcomes = {r.address: err.outcome for r in rows}
        except store.StorageFailure as err:
            log.exception("outbound #%s: blob %s unreadable", message.pk, message.blob)
            outcomes = {r.address: temporary("4.3.0", f"queue file unreadable: {err}").outcome for r in rows}
        progressed = any(outcome.kind == DELIVERED for outcome in outcomes.values())
        again = [r for r in rows if too_many_recipients(outcomes[r.address])] if progressed else []
        if not self.unrecorded:
            self.unrecorded_since = time.monotonic()
        self.unrecorded.append((message, [r for r in rows if r not in again], outcomes, way, passed))
        if len(self.unrecorded) >= RECORD_BATCH or time.monotonic() - self.unrecorded_since >= RECORD_SECONDS:
            self.record()
        return again

    def _leased_through(self, rows: list[OutboundRecipient], seconds: float) -> list[OutboundRecipient]:
        """`rows`, leased until this transaction's longest possible end (`seconds` from now), and so are the
        sent rows whose results are not written yet. When a lease would run out first (a long batch, a large
        message), those results are written and the lease of `rows` extended; rows another run took meanwhile
        are dropped. Otherwise the sweep would hand a row still being sent to another worker: a duplicate."""
        needed = timezone.now() + dt.timedelta(seconds=seconds)
        pending = [row for _, sent, _, _, _ in self.unrecorded for row in sent]
        if all(row.lease_expires_at is not None and row.lease_expires_at >= needed for row in [*rows, *pending]):
            return rows
        self.record()
        return claims.extend_lease(self.owner, rows, needed + dt.timedelta(seconds=claims.LEASE_SECONDS))

    def _prepared(self, message: OutboundMessage) -> bytes:
        """The message as sent (DKIM-signed), kept for its other recipient domains while the run's kept
        messages come to PREPARED_BYTES at most (beyond that the oldest go; the last one always stays)."""
        data = self.prepared.get(message.pk)
        if data is None:
            if self.dkim_keys is None:
                self.dkim_keys = dkim.signing_keys()  # once per run: a new key signs from the next run on
            data = self.prepared[message.pk] = dkim.sign(store.read_blob(message.blob), message.sender, self.dkim_keys)
            self.prepared_bytes += len(data)
            while self.prepared_bytes > PREPARED_BYTES and len(self.prepared) > 1:
                self.prepared_bytes -= len(self.prepared.pop(next(iter(self.prepared))))
        return data

    def _send(self, way: str, domain: str, message: OutboundMessage, rows: list[OutboundRecipient],
              data: bytes, deadline: Deadline) -> tuple[dict[str, Outcome], bool]:
        """One SMTP transaction, over by `deadline`; the outcomes, and whether the receiver took the DSN request
        on."""
        waived = way == transport.MX and mtasts.policy_waived(data)
        destination = _destination(way, domain, waived)
        self.routes[domain] = destination
        rcpts = [r.address for r in rows]
        request = Request(message.ret, message.envid, {r.address: RecipientRequest(r.notify, r.orcpt) for r in rows})
        connection = self._connection(way, domain, destination, deadline, waived)
        try:
            outcomes = connection.send(message.sender, rcpts, data, smtputf8=message.smtputf8, request=request,
                                       deadline=deadline)
        except DeliveryError:
            self.connections.pop(destination, None)
            if connection.transactions == 0 and not connection.reused:
                raise
            # A reused connection the server had closed meanwhile: one fresh try.
            connection = self._connection(way, domain, destination, deadline, waived)
            outcomes = connection.send(message.sender, rcpts, data, smtputf8=message.smtputf8, request=request,
                                       deadline=deadline)
        return outcomes, connection.offers_dsn

    def _connection(self, way: str, domain: str, destination: str, deadline: Deadline,
                    waived: bool = False) -> Connection:
        connection = self.connections.get(destination)
        if connection and not connection.broken:
            return connection
        if destination in self.unreachable:
            # Tried in this run already: the rest wait for their retry with that reply at once, as Postfix
            # suspends delivery to a dead destination, rather than each wait out the timeouts again.
            raise DeliveryError(self.unreachable[destination])
        try:
            connection = pool.checkout(destination) or open_connection(way, domain, waived, deadline)
        except DeliveryError as err:
            self.unreachable[destination] = err.outcome
            raise
        self.connections[destination] = connection
        return connection

    # Results ---------------------------------------------------------------

    def record(self) -> None:
        """Write the results of what was sent (one database transaction), then log, count and notify."""
        sent, self.unrecorded = self.unrecorded, []
        results = [claims.Result(row, outcomes[row.address], way) for _, rows, outcomes, way, _ in sent for row in rows]
        states = iter(claims.record_many(results, self.owner))
        for message, rows, outcomes, _, passed in sent:
            failed, delayed, relayed = [], [], []
            for row in rows:
                outcome, state = outcomes[row.address], next(states)
                _account_for(message, row, state, outcome)
                if state == R.DELIVERED:
                    self.delivered += 1
                    relayed += [] if passed else [row]  # RFC 3461 §5.2.2: the receiver will not report success
                elif state in (R.BOUNCED, R.EXPIRED):
                    failed.append(row)
                elif state == R.DEFERRED and claims.needs_delay_warning(row, timezone.now()):
                    delayed.append(row)
            dsn.notify_sender(message, failed, dsn.FAILED)
            dsn.notify_sender(message, relayed, dsn.RELAYED)
            if delayed:
                dsn.notify_sender(message, delayed, dsn.DELAYED)
                claims.mark_delay_notified(delayed)


def _account_for(message: OutboundMessage, row: OutboundRecipient, state: str, outcome: Outcome) -> None:
    """One log line and one count per delivery attempt per recipient; latency when it was delivered."""
    latency = (timezone.now() - message.created_at).total_seconds() if state == R.DELIVERED else None
    metrics.delivery_attempt(state, latency)
    logs.event(
        log, "delivery.attempt", queue=message.pk, sender=message.sender, recipient=row.address, result=state,
        reply=outcome.reply, host=outcome.host or "-", attempt=row.attempts,
    )


def _destination(way: str, domain: str, waived: bool = False) -> str:
    """The connection and pool key: where mail for `domain` goes by transport `way` (mx or smarthost).

    A connection opened without the domain's MTA-STS policy (`waived`) is never shared with mail that keeps it.
    """
    if way == transport.SMARTHOST:
        return f"smarthost:{conf.relay_host}:{conf.relay_port}"
    return f"mx:{domain}:{conf.outbound_port}" + (":tls-policy-waived" if waived else "")


def open_connection(way: str, domain: str, waived: bool = False, deadline: Deadline | None = None) -> Connection:
    """Connect to the best reachable host for `domain` (or the smarthost); IPv6 then IPv4 per host; no wait
    outlasts `deadline`.

    `waived`: the message asked that TLS policies be ignored (RFC 8689 §4), so MTA-STS is not looked up.
    """
    credentials, verified, implicit_tls = None, None, False
    if way == transport.SMARTHOST:
        if not conf.relay_host:
            raise temporary("4.3.5", "transport smarthost chosen but MAIL_RELAY_HOST is not set")  # RFC 3463 §3.4
        hosts, port, credentials = [_relay_host()], conf.relay_port, conf.relay_credentials
        implicit_tls = conf.relay_implicit_tls
        if conf.relay_tls_verify:  # the password goes only to the smarthost named, not to whoever answers for it
            verified = Verified(mtasts.verified_tls_context(), "MAIL_RELAY_TLS_VERIFY")
    else:
        names, port = mx_names(domain), conf.outbound_port
        policy = None if waived else mtasts.policy_for(domain)  # RFC 8461: enforce: its MX hosts, verified TLS
        hosts = usable_hosts(mtasts.hosts_under(policy, domain, names), domain)
        if policy and policy.mode == mtasts.ENFORCE:
            verified = Verified(mtasts.verified_tls_context(), "its domain's MTA-STS policy")
    last: DeliveryError | None = None
    for host in hosts:
        for address in host.addresses:
            try:
                return Connection.open(host.name, address, port, credentials=credentials, verified=verified,
                                       deadline=deadline, implicit_tls=implicit_tls)
            except DeliveryError as err:
                log.info("%s: %s", domain, err)
                last = err
    raise last or temporary("4.4.1", f"no host to connect to for {domain}")


def _relay_host() -> MXHost:
    host = conf.relay_host
    try:
        ipaddress.ip_address(host)
        return MXHost(host, [host])
    except ValueError:
        pass
    try:
        return MXHost(host, maildns.addresses(host, conf.outbound_address_types))
    except maildns.DNSError as err:
        raise temporary("4.4.3", f"smarthost {host}: {err}") from err


def deliver_message(message_id: int | None, domains: Iterable[str] | None = None) -> int:
    """Entry point for a wake-up about one message and its domains; returns how many recipients were delivered.

    Domains left with due mail (the connection broke or wore out) are woken again.
    """
    from mailcore.delivery.wake import wake  # not at the top: wake -> runner -> worker

    with Run() as run:
        delivered = run.message(message_id, domains)
    if run.unfinished:
        wake(None, sorted(run.unfinished))
    return delivered


def deliver_due(limit: int = claims.CLAIM_BATCH) -> int:
    """Entry point for the in-process runner; returns how many rows were handled (0: nothing due)."""
    with Run() as run:
        return run.due(limit)
