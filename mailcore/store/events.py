"""Change events (new, flags, expunge) that sessions subscribe to.

By default events stay in the process: publishers in any thread hand them to
subscribers' event loops. With REDIS_URL set, events go through Redis pub/sub
so that every process (runmail replicas, web workers) sees every change; a
process that has subscribers runs `redis_bridge()` to receive them.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from mailcore.conf import conf

log = logging.getLogger(__name__)

NEW, FLAGS, EXPUNGE, FOLDERS = "new", "flags", "expunge", "folders"


@dataclass(frozen=True)
class MailboxEvent:
    """Something changed in folder `mailbox_id` of account `account_id`, up to `modseq`."""

    kind: str
    account_id: int
    mailbox_id: int
    modseq: int
    uids: tuple[int, ...] = field(default=())

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> MailboxEvent:
        data = json.loads(text)
        data["uids"] = tuple(data.get("uids", ()))
        return cls(**data)


class Subscription:
    """Events for one folder (or every folder of one account), read from one event loop."""

    def __init__(self, hub: EventHub, account_id: int, mailbox_id: int | None) -> None:
        self.account_id = account_id
        self.mailbox_id = mailbox_id
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[MailboxEvent] = asyncio.Queue()
        self._hub = hub

    def wants(self, event: MailboxEvent) -> bool:
        if self.mailbox_id is None:
            return event.account_id == self.account_id
        return event.mailbox_id == self.mailbox_id

    async def get(self) -> MailboxEvent:
        return await self.queue.get()

    def pending(self) -> list[MailboxEvent]:
        """Every event received so far, without waiting."""
        events = []
        while not self.queue.empty():
            events.append(self.queue.get_nowait())
        return events

    def close(self) -> None:
        self._hub.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[MailboxEvent]:
        while True:
            yield await self.get()


class EventHub:
    """Fans events out to this process's subscribers; thread-safe."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._lock = threading.Lock()
        self._redis_client: Any = None  # a redis.Redis, made on first publish

    def subscribe(self, account_id: int, mailbox_id: int | None = None) -> Subscription:
        """Subscribe from inside a running event loop; `mailbox_id` None means every folder."""
        subscription = Subscription(self, account_id, mailbox_id)
        with self._lock:
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)

    def publish(self, event: MailboxEvent) -> None:
        """Send `event` to every subscriber: through Redis when configured, else directly."""
        if conf.redis_url:
            self._publish_redis(event)
        else:
            self.dispatch_local(event)

    def dispatch_local(self, event: MailboxEvent) -> None:
        with self._lock:
            targets = [s for s in self._subscriptions if s.wants(event)]
        for subscription in targets:
            try:
                subscription.loop.call_soon_threadsafe(subscription.queue.put_nowait, event)
            except RuntimeError:  # that loop has closed; its session is gone
                self.unsubscribe(subscription)

    def _publish_redis(self, event: MailboxEvent) -> None:
        import redis

        try:
            if self._redis_client is None:
                self._redis_client = redis.Redis.from_url(conf.redis_url)
            self._redis_client.publish(f"{conf.events_channel}:mailbox:{event.mailbox_id}", event.to_json())
        except redis.RedisError as err:
            # The change is committed; only the wake-up is lost. Sessions also
            # re-read folder state on NOOP/IDLE timeouts, so nothing is missed for good.
            log.warning("could not publish %s event for mailbox %s: %s", event.kind, event.mailbox_id, err)
            self._redis_client = None

    async def redis_bridge(self, ready: asyncio.Event | None = None) -> None:
        """Receive every process's events from Redis and dispatch them here; runs until cancelled."""
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(conf.redis_url)
        pubsub = client.pubsub()
        await pubsub.psubscribe(f"{conf.events_channel}:mailbox:*")
        if ready is not None:
            ready.set()
        try:
            async for message in pubsub.listen():
                if message.get("type") == "pmessage":
                    self.dispatch_local(MailboxEvent.from_json(message["data"]))
        except GeneratorExit:
            raise  # closed with its event loop already gone: nothing can be awaited any more
        except BaseException:  # cancelled (runmail stopping) or Redis failed: close the connections
            await pubsub.aclose()
            await client.aclose()
            raise


hub = EventHub()
