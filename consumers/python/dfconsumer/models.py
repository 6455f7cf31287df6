"""dfconsumer.models: the Symphony V4 event model with the attribute names of the
Python BDK's generated models (symphony.bdk.gen.agent_model.v4_*): snake_case of the
API's camelCase fields (event.message.stream.stream_id, event.affected_user.user_id,
event.new_room_properties, event.form_values ...).

The objects are lazy views over the decoded msgpack map: nothing is converted until
an attribute is read, so an event nobody looks at costs one small object. Integers
are Python ints (exact, 64-bit and beyond), fields the model does not name are kept
and reachable by their snake_case name too, and to_dict() gives the JSON shape
(camelCase keys, wire order). As with the BDK's models read from the API, a field
that is absent raises AttributeError (use getattr(x, "name", None) or x.get("name"));
a field sent as null reads None."""

import copy
import re

# The model as data: class -> {camelCase field: nested class, "[Class" for an array
# of it, or None for a plain value}. Field lists follow the Agent API 25.8.1
# (schemas/contract-v1.json "schemas").
_SCHEMA = {
    "V4Event": {"id": None, "messageId": None, "timestamp": None, "type": None,
                "diagnostic": None, "initiator": "V4Initiator", "payload": None},  # V4Payload: set by _build
    "V4Initiator": {"user": "V4User"},
    "V4User": {"userId": None, "firstName": None, "lastName": None, "displayName": None,
               "email": None, "username": None},
    "V4Stream": {"streamId": None, "streamType": None, "roomName": None, "members": "[V4User",
                 "external": None, "crossPod": None, "recipientTenantIds": None},
    "V4Message": {"messageId": None, "parentMessageId": None, "timestamp": None, "message": None,
                  "sharedMessage": "V4Message", "data": None,
                  "attachments": "[V4AttachmentInfo", "user": "V4User", "stream": "V4Stream",
                  "externalRecipients": None, "diagnostic": None, "userAgent": None,
                  "originalFormat": None, "disclaimer": None, "sid": None, "replacing": None,
                  "replacedBy": None, "initialTimestamp": None, "initialMessageId": None,
                  "silent": None},
    "V4AttachmentInfo": {"id": None, "name": None, "size": None, "images": "[V4ThumbnailInfo"},
    "V4ThumbnailInfo": {"id": None, "dimension": None},
    "V4RoomProperties": {"name": None, "description": None, "creatorUser": "V4User",
                         "createdDate": None, "external": None, "crossPod": None, "public": None,
                         "copyProtected": None, "readOnly": None, "discoverable": None,
                         "membersCanInvite": None, "keywords": "[V4KeyValuePair",
                         "canViewHistory": None},
    "V4KeyValuePair": {"key": None, "value": None},
    "V4MessageSent": {"message": "V4Message"},
    "V4SharedPost": {"message": "V4Message", "sharedMessage": "V4Message"},
    "V4InstantMessageCreated": {"stream": "V4Stream"},
    "V4RoomCreated": {"stream": "V4Stream", "roomProperties": "V4RoomProperties"},
    "V4RoomUpdated": {"stream": "V4Stream", "newRoomProperties": "V4RoomProperties"},
    "V4RoomDeactivated": {"stream": "V4Stream"},
    "V4RoomReactivated": {"stream": "V4Stream"},
    "V4UserRequestedToJoinRoom": {"stream": "V4Stream", "affectedUsers": "[V4User"},
    "V4UserJoinedRoom": {"stream": "V4Stream", "affectedUser": "V4User"},
    "V4UserLeftRoom": {"stream": "V4Stream", "affectedUser": "V4User"},
    "V4RoomMemberPromotedToOwner": {"stream": "V4Stream", "affectedUser": "V4User"},
    "V4RoomMemberDemotedFromOwner": {"stream": "V4Stream", "affectedUser": "V4User"},
    "V4ConnectionRequested": {"toUser": "V4User"},
    "V4ConnectionAccepted": {"fromUser": "V4User"},
    "V4MessageSuppressed": {"messageId": None, "stream": "V4Stream"},
    "V4SymphonyElementsAction": {"stream": "V4Stream", "formMessageId": None, "formId": None,
                                 "formValues": None},
    "V4GenericSystemEvent": {"stream": "V4Stream", "eventTimestamp": None, "sourceSystem": None,
                             "eventSubtype": None, "parameters": None},
    # pod models: the bot's identity as is_accepting_event receives it (only id is known
    # there), and the results of the command channel's calls (dfconsumer.services)
    "UserV2": {"id": None, "emailAddress": None, "firstName": None, "lastName": None,
               "displayName": None, "title": None, "company": None, "username": None,
               "location": None, "accountType": None, "avatars": "[Avatar",
               "workPhoneNumber": None, "mobilePhoneNumber": None, "jobFunction": None,
               "department": None, "division": None, "roles": None},
    "Avatar": {"size": None, "url": None},
    "UserError": {"error": None, "email": None, "id": None},
    "V2UserList": {"users": "[UserV2", "errors": "[UserError"},
    "Stream": {"id": None},
    "V2StreamAttributes": {"id": None, "crossPod": None, "origin": None, "active": None,
                           "lastMessageDate": None, "streamType": "V2StreamType",
                           "streamAttributes": "V2ConversationSpecificStreamAttributes",
                           "roomAttributes": "V2RoomSpecificStreamAttributes"},
    "V2StreamType": {"type": None},
    "V2ConversationSpecificStreamAttributes": {"members": None},
    "V2RoomSpecificStreamAttributes": {"name": None, "groups": None},
    "MessageSuppressionResponse": {"messageId": None, "suppressed": None,
                                   "suppressionDate": None},
    "SuccessResponse": {"format": None, "message": None},
}

# The 17 event types: topic, payload key, payload class, the Python BDK's callback.
# ONE table: dispatch, the payload model and the conformance names derive from it.
EVENT_TYPES = (
    ("MESSAGESENT", "messageSent", "V4MessageSent", "on_message_sent"),
    ("SHAREDPOST", "sharedPost", "V4SharedPost", "on_shared_post"),
    ("INSTANTMESSAGECREATED", "instantMessageCreated", "V4InstantMessageCreated",
     "on_instant_message_created"),
    ("ROOMCREATED", "roomCreated", "V4RoomCreated", "on_room_created"),
    ("ROOMUPDATED", "roomUpdated", "V4RoomUpdated", "on_room_updated"),
    ("ROOMDEACTIVATED", "roomDeactivated", "V4RoomDeactivated", "on_room_deactivated"),
    ("ROOMREACTIVATED", "roomReactivated", "V4RoomReactivated", "on_room_reactivated"),
    ("USERREQUESTEDTOJOINROOM", "userRequestedToJoinRoom", "V4UserRequestedToJoinRoom",
     "on_user_requested_to_join_room"),
    ("USERJOINEDROOM", "userJoinedRoom", "V4UserJoinedRoom", "on_user_joined_room"),
    ("USERLEFTROOM", "userLeftRoom", "V4UserLeftRoom", "on_user_left_room"),
    ("ROOMMEMBERPROMOTEDTOOWNER", "roomMemberPromotedToOwner", "V4RoomMemberPromotedToOwner",
     "on_room_member_promoted_to_owner"),
    ("ROOMMEMBERDEMOTEDFROMOWNER", "roomMemberDemotedFromOwner", "V4RoomMemberDemotedFromOwner",
     "on_room_demoted_from_owner"),  # sic: the BDK's name
    ("CONNECTIONREQUESTED", "connectionRequested", "V4ConnectionRequested",
     "on_connection_requested"),
    ("CONNECTIONACCEPTED", "connectionAccepted", "V4ConnectionAccepted", "on_connection_accepted"),
    ("MESSAGESUPPRESSED", "messageSuppressed", "V4MessageSuppressed", "on_message_suppressed"),
    ("SYMPHONYELEMENTSACTION", "symphonyElementsAction", "V4SymphonyElementsAction",
     "on_symphony_elements_action"),
    ("GENERICSYSTEMEVENT", "genericSystemEvent", "V4GenericSystemEvent",
     "on_generic_system_event"),
)

_snake_cache = {}
_R1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_R2 = re.compile(r"([a-z0-9])([A-Z])")


def snake_case(name):
    """The BDK's (openapi-generator's) attribute name of an API field:
    streamId -> stream_id, recipientTenantIds -> recipient_tenant_ids."""
    s = _snake_cache.get(name)
    if s is None:
        s = _R2.sub(r"\1_\2", _R1.sub(r"\1_\2", name)).replace("-", "_").lower()
        if len(_snake_cache) < 4096:
            _snake_cache[name] = s
    return s


class Model:
    """Base of every model: a view over one decoded map (`_d`)."""

    __slots__ = ("_d",)
    _fields = {}   # snake name -> (camel key, nested class or None, is array)
    _camel = {}    # camel key -> snake name (the model's own fields)

    def __init__(self, data=None):
        object.__setattr__(self, "_d", data if data is not None else {})

    def __getattr__(self, name):
        spec = self._fields.get(name)
        d = self._d
        if spec is None:
            if name[:1] == "_":
                raise AttributeError(name)
            key = self._unknown_key(name)
            if key is None:
                raise AttributeError(f"{type(self).__name__} has no attribute '{name}'")
            return d[key]
        key, cls, many = spec
        try:
            v = d[key]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no attribute '{name}'") from None
        if cls is None or v is None:
            return v
        if many:
            if type(v) is list:
                return [cls(x) if type(x) is dict else x for x in v]
            return v
        return cls(v) if type(v) is dict else v

    def _unknown_key(self, name):
        # a field the model does not name: found by its snake_case name (or as is)
        d = self._d
        if name in d and name not in self._camel:
            return name
        for k in d:
            if type(k) is str and k not in self._camel and snake_case(k) == name:
                return k
        return None

    def __setattr__(self, name, value):
        raise AttributeError("dfconsumer models are read-only views of the received data")

    def get(self, name, default=None):
        """The attribute `name`, or default when absent (the BDK models' get)."""
        try:
            return getattr(self, name)
        except AttributeError:
            return default

    def __contains__(self, name):
        return self.get(name, _MISSING) is not _MISSING

    def attribute_names(self):
        """The snake_case names of the fields present, in wire order."""
        return [self._camel.get(k) or snake_case(k) for k in self._d if type(k) is str]

    def to_dict(self):
        """The JSON shape: a deep copy of the map, camelCase keys in wire order."""
        return copy.deepcopy(self._d)

    def __eq__(self, other):
        return type(other) is type(self) and other._d == self._d

    __hash__ = None  # like the BDK's models: equal by content, so not hashable

    def __copy__(self):
        return type(self)(self._d)

    def __deepcopy__(self, memo):
        return type(self)(copy.deepcopy(self._d, memo))

    def __reduce__(self):
        return (type(self), (self._d,))

    def __dir__(self):
        return sorted(set(self._fields) | set(self.attribute_names()) | set(dir(type(self))))

    def __repr__(self):
        return f"{type(self).__name__}({self._d!r})"


_MISSING = object()
MODELS = {}


def _build():
    for name in _SCHEMA:
        MODELS[name] = type(name, (Model,), {"__slots__": (), "__module__": __name__})
    for name, fields in _SCHEMA.items():
        cls = MODELS[name]
        cls._fields = {}
        cls._camel = {}
        for camel, spec in fields.items():
            many = bool(spec) and spec.startswith("[")
            sub = MODELS[spec.lstrip("[")] if spec else None
            snake = snake_case(camel)
            cls._fields[snake] = (camel, sub, many)
            cls._camel[camel] = snake
    payload = type("V4Payload", (Model,), {"__slots__": (), "__module__": __name__})
    payload._fields = {snake_case(k): (k, MODELS[c], False) for _, k, c, _ in EVENT_TYPES}
    payload._camel = {k: snake_case(k) for _, k, _, _ in EVENT_TYPES}
    MODELS["V4Payload"] = payload
    MODELS["V4Event"]._fields["payload"] = ("payload", payload, False)


_build()
globals().update(MODELS)
V4Event = MODELS["V4Event"]
V4Initiator = MODELS["V4Initiator"]
V4User = MODELS["V4User"]
V4Payload = MODELS["V4Payload"]
UserV2 = MODELS["UserV2"]

__all__ = ["Model", "snake_case", "EVENT_TYPES", "MODELS"] + sorted(MODELS)
