"""dfconsumer.listener: RealTimeEventListener with the Python BDK's callbacks
(symphony.bdk.core.service.datafeed.real_time_event_listener), plus
on_generic_system_event (the BDK drops that type; we do not) and on_unknown_event
(any other topic), and the two ContextVars a callback can read."""

from contextvars import ContextVar

from .wire import I64_MAX, I64_MIN

# The BDK's logging context (abstract_datafeed_loop.event_listener_context): inside a
# callback f"{task name}/{event id}/{id(listener)}", elsewhere "main-task".
event_listener_context = ContextVar("event_listener_context", default="main-task")

# The envelope of the event a callback handles (dfconsumer.wire.Envelope: topic, seq,
# gseq, epoch, ts, bot, event map, replayed); None outside a callback.
current_envelope = ContextVar("dfconsumer_current_envelope", default=None)


class RealTimeEventListener:
    """Subclass it and override the callbacks you need (all are coroutines and
    optional). Callbacks run as asyncio tasks, one per (event, accepting listener):
    concurrently across events and across listeners, like the BDK's DatafeedLoop."""

    @staticmethod
    async def is_accepting_event(event, bot_info) -> bool:
        """Whether this listener handles `event` (the whole V4Event). The default is the
        BDK's: skip the bot's own events, comparing event.initiator.user.user_id with
        bot_info.id (bot_info.id is the envelope's `bot`); an event without an
        initiator user id is not accepted either. The id must be an int64, as the
        BDK's typed model requires (and as libdfconsumer checks)."""
        try:
            user_id = event.initiator.user.user_id
        except AttributeError:
            return False
        return (type(user_id) is int and I64_MIN <= user_id <= I64_MAX
                and user_id != bot_info.id)

    async def on_message_sent(self, initiator, event):
        """MESSAGESENT: event is a V4MessageSent."""

    async def on_shared_post(self, initiator, event):
        """SHAREDPOST: event is a V4SharedPost."""

    async def on_instant_message_created(self, initiator, event):
        """INSTANTMESSAGECREATED: event is a V4InstantMessageCreated."""

    async def on_room_created(self, initiator, event):
        """ROOMCREATED: event is a V4RoomCreated."""

    async def on_room_updated(self, initiator, event):
        """ROOMUPDATED: event is a V4RoomUpdated."""

    async def on_room_deactivated(self, initiator, event):
        """ROOMDEACTIVATED: event is a V4RoomDeactivated."""

    async def on_room_reactivated(self, initiator, event):
        """ROOMREACTIVATED: event is a V4RoomReactivated."""

    async def on_user_requested_to_join_room(self, initiator, event):
        """USERREQUESTEDTOJOINROOM: event is a V4UserRequestedToJoinRoom."""

    async def on_user_joined_room(self, initiator, event):
        """USERJOINEDROOM: event is a V4UserJoinedRoom."""

    async def on_user_left_room(self, initiator, event):
        """USERLEFTROOM: event is a V4UserLeftRoom."""

    async def on_room_member_promoted_to_owner(self, initiator, event):
        """ROOMMEMBERPROMOTEDTOOWNER: event is a V4RoomMemberPromotedToOwner."""

    async def on_room_demoted_from_owner(self, initiator, event):
        """ROOMMEMBERDEMOTEDFROMOWNER: event is a V4RoomMemberDemotedFromOwner (the
        BDK's name, sic)."""

    async def on_connection_requested(self, initiator, event):
        """CONNECTIONREQUESTED: event is a V4ConnectionRequested."""

    async def on_connection_accepted(self, initiator, event):
        """CONNECTIONACCEPTED: event is a V4ConnectionAccepted."""

    async def on_message_suppressed(self, initiator, event):
        """MESSAGESUPPRESSED: event is a V4MessageSuppressed."""

    async def on_symphony_elements_action(self, initiator, event):
        """SYMPHONYELEMENTSACTION: event is a V4SymphonyElementsAction."""

    async def on_generic_system_event(self, initiator, event):
        """GENERICSYSTEMEVENT: event is a V4GenericSystemEvent (not in the BDK, which
        drops this type)."""

    async def on_unknown_event(self, initiator, event):
        """Any topic that is not one of the 17 types (UNKNOWN, a future type): event is
        the whole V4Event (C: on_unknown)."""
