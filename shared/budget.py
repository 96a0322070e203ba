"""The optional daily spend budget (``VISION_DAILY_BUDGET_USD``): what a call cost, today's spend, the refusal.

Why each part is the way it is:

* **UTC days.** Every instance, whatever its time zone, must agree on which counter a call lands in
  and when the budget resets, so a day is a UTC date (:func:`day_key`) and the reset is the next UTC
  midnight (:func:`next_reset`); the refusal's ``Retry-After`` is the seconds until then.
* **Actual cost.** A call is charged from the ``usage`` the service reported, at the prices of the
  model that answered (a fallback deployment may be a cheaper model): :class:`Pricing`, over the same
  price table as every result's ``estimated_cost_usd``. Failed calls report no usage and are not counted.
* **One counter for all instances.** Several Function instances and a ``batch`` on a laptop spend
  the same money, so the counter is an entity per UTC day in Table Storage (:class:`SpendLedger`),
  holding micro-dollars as an Int64 (sums of floats drift; integers never do) and the call count.
  It is changed by an ETag-conditional read-modify-write, retried on conflict, so concurrent writers
  (threads, processes, instances) never lose an update.
* **A soft limit.** The check is made before a call and the cost is known only after it, so calls
  already in flight when the budget is reached still finish and are counted: the overshoot is at
  most the calls in flight across instances. Refusing an answer already paid for would waste it.
* **Storage trouble fails open.** If the table cannot be read, the last spend seen (today's) is used;
  if it cannot be written, the amount is kept in memory and added with the next write, so nothing is
  lost once storage answers again. Stopping every model call because a counter is unreachable would
  turn a storage hiccup into an outage; the health route shows the error.

The synchronous table SDK is used, as by the answer cache (:mod:`shared.cache`), from worker threads
(``asyncio.to_thread``), so the event loop never blocks on storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableServiceClient, UpdateMode

from shared.errors import BudgetExhausted, ConfigError, describe
from shared.providers.base import Completion
from shared.storage import environment_options, normalise_connection_string
from shared.tokens import ModelSpec, estimate_cost, get_model_spec, load_model_overrides

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.config import Settings

log = logging.getLogger(__name__)

MICROS_PER_USD = 1_000_000
#: Every day's counter lives in one partition: a handful of rows a year, point reads and writes only.
PARTITION = "spend"
#: How long :meth:`DailyBudget.check` trusts the spend it last read before reading the table again.
READ_CACHE_SECONDS = 1.0
#: After a storage failure, how long the last known spend is used before the table is tried again.
FAILURE_COOLDOWN_SECONDS = 15.0
#: Lost ETag races one add may take before giving up (it is then kept and retried with the next add).
MAX_CONFLICTS = 100


# -- pure arithmetic --------------------------------------------------------------------------


def day_key(now: float) -> str:
    """The UTC day (``YYYY-MM-DD``) of epoch seconds ``now``: the RowKey of that day's counter."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def next_reset(now: float) -> datetime:
    """The UTC midnight after ``now``, when a new day's counter starts at zero."""
    day = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def seconds_until_reset(now: float) -> float:
    """Seconds from ``now`` to the next UTC midnight (in ``(0, 86400]``)."""
    return next_reset(now).timestamp() - now


def iso(moment: datetime) -> str:
    """``2024-05-02T00:00:00Z``: how times are written in results and health."""
    return moment.isoformat().replace("+00:00", "Z")


def to_micros(usd: float) -> int:
    """Whole micro-dollars, rounded up: an estimate that errs is better erring towards the budget."""
    return max(0, math.ceil(round(usd * MICROS_PER_USD, 3)))


class Pricing:
    """What a completion cost: its ``usage`` at the prices of the model that answered.

    ``completion.pricing_model`` (set by a fallback deployment that is another model), else the
    settings' estimation model; ``VISION_MODEL_TABLE`` overrides apply, as to ``estimated_cost_usd``.
    """

    def __init__(self, default_model: str, overrides: Mapping[str, ModelSpec] | None = None) -> None:
        self.default_model = default_model
        self.overrides = overrides

    @classmethod
    def from_settings(cls, settings: Settings) -> Pricing:
        overrides = load_model_overrides(settings.model_table_json) if settings.model_table_json else None
        return cls(settings.estimation_model, overrides)

    def cost(self, completion: Completion) -> float:
        spec = get_model_spec(completion.pricing_model or self.default_model, self.overrides)
        usage = completion.usage
        return estimate_cost(usage.prompt_tokens, usage.completion_tokens, spec.name, self.overrides)


@dataclass(frozen=True)
class DaySpend:
    """One UTC day's spend: micro-dollars and calls."""

    day: str
    micros: int = 0
    calls: int = 0

    @property
    def usd(self) -> float:
        return self.micros / MICROS_PER_USD

    def plus(self, micros: int, calls: int) -> DaySpend:
        return DaySpend(self.day, self.micros + micros, self.calls + calls)


# -- the shared counter -----------------------------------------------------------------------


def _integer(value: Any) -> int:
    """An entity's integer, whether the SDK gives it plain (Int32) or as an ``EntityProperty`` (Int64)."""
    value = getattr(value, "value", value)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class SpendLedger:
    """Each UTC day's spend in a table shared by every instance (see the module doc); synchronous.

    Entities are ``PartitionKey='spend'``, ``RowKey=<day>``, ``micro_usd`` and ``calls`` (Int64), and
    ``usd`` (a Double, for people reading the table; never read back). The table is created on first use.
    """

    def __init__(self, table_service: TableServiceClient, table_name: str, *, conflict_wait: float = 0.005) -> None:
        self.table_name = table_name
        self._service = table_service
        self._table = table_service.get_table_client(table_name)
        self._conflict_wait = conflict_wait
        self._table_ready = False
        #: Write races lost (and retried) since start: how contended the counter is.
        self.conflicts = 0

    @classmethod
    def from_settings(cls, settings: Settings, *, credential: Callable[[], TokenCredential] | None = None
                      ) -> SpendLedger:
        """The account the answer cache uses: ``AzureWebJobsStorage``, or keyless ``__tableServiceUri``.

        Unlike the cache, a budget with no table is a configuration error: a budget silently not
        enforced is worse than a clear refusal to start.
        """
        options: dict[str, Any] = {"connection_timeout": 2.0, "read_timeout": 5.0, "retry_total": 2,
                                   **environment_options()}  # read once, not on every call's record
        if settings.storage_connection_string:
            try:
                service = TableServiceClient.from_connection_string(
                    normalise_connection_string(settings.storage_connection_string), **options)
            except ValueError:
                raise ConfigError("AzureWebJobsStorage", "is not a valid storage connection string") from None
            return cls(service, settings.budget_table)
        if settings.table_service_uri:
            if credential is None:
                raise ConfigError("AzureWebJobsStorage__tableServiceUri", "keyless access needs an Entra ID credential")
            return cls(TableServiceClient(endpoint=settings.table_service_uri, credential=credential(), **options),
                       settings.budget_table)
        raise ConfigError("VISION_DAILY_BUDGET_USD", "the spend counter needs a table: set AzureWebJobsStorage "
                                                     "(UseDevelopmentStorage=true for Azurite) or "
                                                     "AzureWebJobsStorage__tableServiceUri")

    def read(self, day: str) -> DaySpend:
        """The day's spend (zero when nothing was spent yet)."""
        entity = self._get(day)
        return DaySpend(day) if entity is None else self._spend_of(day, entity)

    def add(self, day: str, micros: int, calls: int = 1) -> DaySpend:
        """Add to the day's counter without losing a concurrent writer's update; the new total.

        Read, then write only if the entity is unchanged since (``If-Match`` its ETag) or, when there is
        none yet, create it (which fails if another writer created it first). A lost race reads again,
        after a short random wait so the losers do not collide again in lockstep.
        """
        for attempt in range(MAX_CONFLICTS):
            entity = self._get(day)
            try:
                if entity is None:
                    total = DaySpend(day, micros, calls)
                    self._table.create_entity(self._entity(total))
                else:
                    total = self._spend_of(day, entity).plus(micros, calls)
                    self._table.update_entity(self._entity(total), mode=UpdateMode.REPLACE,
                                              etag=entity.metadata["etag"],
                                              match_condition=MatchConditions.IfNotModified)
                return total
            except ResourceExistsError:
                pass  # created by another writer first: add to theirs
            except HttpResponseError as exc:
                if exc.status_code not in (404, 412):  # 412: changed since read; 404: deleted since read
                    raise
            self.conflicts += 1
            time.sleep(random.uniform(0, min(0.2, self._conflict_wait * 2 ** min(attempt, 6))))
        raise TimeoutError(f"spend counter {day}: lost {MAX_CONFLICTS} write races in a row")

    def close(self) -> None:
        self._service.close()

    def _get(self, day: str) -> Any:
        if not self._table_ready:
            with contextlib.suppress(ResourceExistsError):
                self._table.create_table()
            self._table_ready = True
        try:
            return self._table.get_entity(partition_key=PARTITION, row_key=day)
        except ResourceNotFoundError as exc:
            if exc.error_code == "TableNotFound":  # deleted behind our back: create it again next time
                self._table_ready = False
                raise
            return None

    @staticmethod
    def _spend_of(day: str, entity: Mapping[str, Any]) -> DaySpend:
        return DaySpend(day, _integer(entity.get("micro_usd")), _integer(entity.get("calls")))

    @staticmethod
    def _entity(spend: DaySpend) -> dict[str, Any]:
        return {"PartitionKey": PARTITION, "RowKey": spend.day, "usd": float(spend.usd),
                "micro_usd": EntityProperty(spend.micros, EdmType.INT64),
                "calls": EntityProperty(spend.calls, EdmType.INT64)}


# -- the budget -------------------------------------------------------------------------------


class DailyBudget:
    """The check before a model call, the record after it, and what the health route shows.

    :meth:`check` reuses the spend it read for up to ``read_cache_seconds`` (1 s) so a burst of calls
    costs one table read, not one each; concurrent callers share that read. :meth:`record` adds costs
    to the table; records arriving while a write is under way are summed into the next write, so one
    process under load makes about one write at a time. ``clock`` (epoch seconds) decides the day.
    """

    def __init__(self, limit_usd: float, ledger: SpendLedger, *, clock: Callable[[], float] = time.time,
                 read_cache_seconds: float = READ_CACHE_SECONDS,
                 failure_cooldown_seconds: float = FAILURE_COOLDOWN_SECONDS) -> None:
        self.limit_usd = limit_usd
        self.limit_micros = to_micros(limit_usd)
        self.ledger = ledger
        self.read_cache_seconds = read_cache_seconds
        self.failure_cooldown_seconds = failure_cooldown_seconds
        self.clock = clock
        self._known: DaySpend | None = None  # the latest total seen in (or written to) the table
        self._fresh_until = -math.inf  # monotonic: ``_known`` is trusted until then
        self._cool_until = -math.inf  # monotonic: after a storage failure, no read until then
        self._pending: dict[str, list[int]] = {}  # day -> [micros, calls] not in the table yet
        self._read_lock: asyncio.Lock | None = None
        self._write_lock: asyncio.Lock | None = None
        #: The last storage failure, None once the table answers again (shown by the health route).
        self.last_error: str | None = None

    async def spent(self, *, fresh: bool = False) -> DaySpend:
        """Today's spend: the table's (read at most every ``read_cache_seconds``) plus what is not written yet."""
        today = day_key(self.clock())
        self._read_lock = self._read_lock or asyncio.Lock()
        async with self._read_lock:
            known = self._known if self._known is not None and self._known.day == today else None
            now = time.monotonic()
            if fresh or (now >= self._cool_until and (known is None or now >= self._fresh_until)):
                try:
                    known = await asyncio.to_thread(self.ledger.read, today)
                except Exception as exc:
                    self._failed("read", exc)
                else:
                    self._remember(known)
        micros, calls = self._pending.get(today, (0, 0))
        return (known or DaySpend(today)).plus(micros, calls)

    async def check(self) -> None:
        """Raise :class:`~shared.errors.BudgetExhausted` when today's spend has reached the budget."""
        spent = await self.spent()
        if spent.micros >= self.limit_micros:
            now = self.clock()
            raise BudgetExhausted(spent_usd=spent.usd, budget_usd=self.limit_usd,
                                  retry_after=seconds_until_reset(now), resets_at=iso(next_reset(now)))

    async def record(self, usd: float, *, calls: int = 1) -> None:
        """Add one call's cost to today's counter; shielded, so a caller that leaves does not lose it."""
        pending = self._pending.setdefault(day_key(self.clock()), [0, 0])
        pending[0] += to_micros(usd)
        pending[1] += calls
        await asyncio.shield(self._flush())

    async def status(self) -> dict[str, Any]:
        """The health route's ``budget``: the limit, today's spend and calls (read now), the next reset."""
        now = self.clock()
        spent = await self.spent(fresh=True)
        body: dict[str, Any] = {"daily_usd": self.limit_usd, "spent_today_usd": round(spent.usd, 6),
                                "calls_today": spent.calls, "resets_at": iso(next_reset(now)),
                                "exhausted": spent.micros >= self.limit_micros}
        if self.last_error is not None:
            body["error"] = self.last_error
        return body

    async def aclose(self) -> None:
        """Write what is still pending (best effort), then close the table client."""
        if self._pending:
            await self._flush()
        await asyncio.to_thread(self.ledger.close)

    async def _flush(self) -> None:
        self._write_lock = self._write_lock or asyncio.Lock()
        async with self._write_lock:
            batch, self._pending = self._pending, {}
            for day, (micros, calls) in sorted(batch.items()):
                try:
                    total = await asyncio.to_thread(self.ledger.add, day, micros, calls)
                except Exception as exc:  # kept, and added with the next write
                    self._failed("write", exc)
                    kept = self._pending.setdefault(day, [0, 0])
                    kept[0] += micros
                    kept[1] += calls
                    continue
                if self._known is None or self._known.day <= day:
                    self._remember(total)
                else:  # a late write for yesterday: the table answered, today's view stands
                    self.last_error = None

    def _remember(self, spend: DaySpend) -> None:
        """The table answered with ``spend``: trust it for ``read_cache_seconds``."""
        if self.last_error is not None:
            log.info("spend budget: table %s answers again", self.ledger.table_name)
        self.last_error = None
        self._known = spend
        self._fresh_until = time.monotonic() + self.read_cache_seconds
        self._cool_until = -math.inf

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.last_error = describe(exc)
        self._cool_until = time.monotonic() + self.failure_cooldown_seconds
        log.warning("spend budget: %s of table %s failed, using the last spend seen: %s",
                    operation, self.ledger.table_name, self.last_error)


def build_budget(settings: Settings, *, credential: Callable[[], TokenCredential] | None = None,
                 clock: Callable[[], float] = time.time) -> DailyBudget | None:
    """The budget the settings ask for, or None: no ``VISION_DAILY_BUDGET_USD``, or no billed language model
    (the offline engine costs nothing)."""
    if settings.daily_budget_usd is None or settings.model_provider is None:
        return None
    return DailyBudget(settings.daily_budget_usd, SpendLedger.from_settings(settings, credential=credential),
                       clock=clock)
