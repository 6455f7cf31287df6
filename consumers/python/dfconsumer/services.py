"""dfconsumer.services: the Python BDK's MessageService, StreamService and UserService
(symphony.bdk.core.service.*, v2.x: same method names, arguments, defaults and result
models) over dfbridge's command channel, and the BDK's Message. The bridge makes the
Symphony call with its session; a listener that replies through the BDK runs with only
its imports changed."""

import json
import mimetypes
import os

from .commands import CommandClient
from .models import (MessageSuppressionResponse, Stream, V2StreamAttributes,
                     V2UserList, V4Message)

MESSAGE_ML_START_TAG = "<messageML>"
MESSAGE_ML_END_TAG = "</messageML>"


class MessageCreationError(Exception):
    """The BDK's MessageCreationError: no content, or previews for only some attachments."""


class Message:
    """The BDK's Message (symphony.bdk.core.service.message.model.Message):
    Message(content, data=None, silent=True, attachments=None, version="").
    content: MessageML, wrapped in <messageML>...</messageML> unless it starts with
    <messageML> or ends with </messageML>; data: any object, serialized with json.dumps
    ("" when None); attachments: opened files, or (file, preview) tuples (all or none with
    a preview). Also accepted here: dicts {name, content: bytes, content_type?, preview?}."""

    def __init__(self, content, data=None, silent=True, attachments=None, version=""):
        self._content = self._get_content(content)
        self._data = "" if data is None else json.dumps(data)
        self._version = version
        self._silent = silent
        self._attachments, self._previews = self._get_attachments_and_previews(attachments)

    @property
    def content(self):
        """The MessageML content (wrapped)."""
        return self._content

    @property
    def data(self):
        """The data as a JSON string ("" when none)."""
        return self._data

    @property
    def version(self):
        return self._version

    @property
    def silent(self):
        return self._silent

    @property
    def attachments(self):
        return self._attachments

    @property
    def previews(self):
        return self._previews

    @staticmethod
    def _get_content(content):
        if content is None:
            raise MessageCreationError("Message content is mandatory")
        if not isinstance(content, str):
            raise TypeError(f"message content must be a str, not {type(content).__name__}")
        if not content.startswith(MESSAGE_ML_START_TAG) and not content.endswith(
                MESSAGE_ML_END_TAG):
            return MESSAGE_ML_START_TAG + content + MESSAGE_ML_END_TAG
        return content

    @staticmethod
    def _get_attachments_and_previews(items):
        if items is None:
            return [], []
        attachments, previews = [], []
        for item in items:
            if isinstance(item, tuple) and len(item) >= 1:
                attachments.append(item[0])
                if len(item) >= 2:
                    previews.append(item[1])
            else:
                attachments.append(item)
        if previews and len(previews) != len(attachments):
            raise MessageCreationError(
                "Message should contain either no preview or as many previews as attachments")
        return attachments, previews


def _read_bytes(f, what):
    data = f.read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what}: read() gave {type(data).__name__}, not bytes or str")
    return bytes(data)


def _file_name(f, what):
    name = getattr(f, "name", None)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what}: a file object with a name (opened from a path) or a dict "
                         "{name, content}")
    return os.path.basename(name)


def attachment_args(attachments, previews):
    """The protocol's attachments array for files (read now: their bytes go in the
    request) and their previews; the content type is guessed from the name, as the BDK's
    generated client does (application/octet-stream when unknown)."""
    out = []
    for i, f in enumerate(attachments):
        if isinstance(f, dict):
            a = dict(f)
        else:
            name = _file_name(f, f"attachment {i + 1}")
            a = {"name": name, "content": _read_bytes(f, f"attachment {name}")}
            a["content_type"] = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if previews:
            p = previews[i]
            a["preview"] = p if isinstance(p, (bytes, bytearray)) else _read_bytes(
                p, f"preview of attachment {i + 1}")
        out.append(a)
    return out


def _message_args(m):
    """The message part of messages.send/update args from a Message."""
    args = {"message": m.content}
    if m.data:
        args["data"] = m.data
    if m.version:
        args["version"] = m.version
    return args


def _model(cls, result):
    return cls(result) if isinstance(result, dict) else result


class MessageService:
    """The BDK's MessageService, the methods a bot that replies uses, over the command
    channel. Errors: dfconsumer.commands.CommandError subclasses (Rejected for a 4xx from
    Symphony, with .status) instead of the BDK's ApiException."""

    def __init__(self, client: CommandClient):
        self._client = client

    async def send_message(self, stream_id, message, data=None, version="", attachment=None):
        """Sends a message to a stream (messages.send): message is MessageML (tags may be
        omitted) or a Message (then the other arguments are ignored); data: an object
        serialized with json.dumps; attachment: files or (file, preview) tuples.
        Returns the V4Message Symphony created (exactly once per id: see the package
        README, "Replying through the bridge")."""
        m = message if isinstance(message, Message) else Message(
            content=message, data=data, version=version, attachments=attachment)
        args = {"stream_id": stream_id}
        args.update(_message_args(m))
        if m.attachments:
            args["attachments"] = attachment_args(m.attachments, m.previews)
        return _model(V4Message, await self._client.call("messages.send", args))

    async def update_message(self, stream_id, message_id, message, data=None, version="",
                             silent=True):
        """Updates a message (messages.update); the result is the new V4Message (a new
        message_id; `replacing` holds the old one). With a Message, its data, version and
        silent are used."""
        m = message if isinstance(message, Message) else Message(
            content=message, data=data, silent=silent, version=version)
        args = {"stream_id": stream_id, "message_id": message_id}
        args.update(_message_args(m))
        args["silent"] = bool(m.silent)
        return _model(V4Message, await self._client.call("messages.update", args))

    async def suppress_message(self, message_id):
        """Suppresses a message (messages.suppress): a MessageSuppressionResponse."""
        return _model(MessageSuppressionResponse, await self._client.call(
            "messages.suppress", {"message_id": message_id}))

    async def get_message(self, message_id):
        """The V4Message of that id (messages.get), None when Symphony has none (204)."""
        return _model(V4Message, await self._client.call("messages.get",
                                                         {"message_id": message_id}))


class StreamService:
    """The BDK's StreamService (create_im, add_member_to_room, remove_member_from_room,
    get_stream) over the command channel."""

    def __init__(self, client: CommandClient):
        self._client = client

    async def create_im(self, user_id):
        """The IM with that user (streams.createIm; an existing IM is returned): a Stream
        whose id is the stream id."""
        return await self.create_im_or_mim([user_id])

    async def create_im_or_mim(self, user_ids):
        """The IM or MIM with these users (not in the Python BDK; the Java BDK's
        create(List<Long>)): a Stream."""
        return _model(Stream, await self._client.call("streams.createIm",
                                                      {"user_ids": list(user_ids)}))

    async def add_member_to_room(self, user_id, room_id):
        """Adds a member to a room (rooms.addMember). Returns None, as the BDK."""
        await self._client.call("rooms.addMember", {"stream_id": room_id, "user_id": user_id})

    async def remove_member_from_room(self, user_id, room_id):
        """Removes a member from a room (rooms.removeMember). Returns None, as the BDK."""
        await self._client.call("rooms.removeMember",
                                {"stream_id": room_id, "user_id": user_id})

    async def get_stream(self, stream_id):
        """The stream's V2StreamAttributes (streams.info)."""
        return _model(V2StreamAttributes, await self._client.call("streams.info",
                                                                  {"stream_id": stream_id}))


class UserService:
    """The BDK's UserService lookups (list_users_by_ids, _by_emails, _by_usernames) over
    the command channel: a V2UserList, or None when Symphony found nobody (204)."""

    def __init__(self, client: CommandClient):
        self._client = client

    async def _lookup(self, key, values, local, active):
        args = {key: list(values)}
        if local is not None:
            args["local"] = bool(local)
        if active is not None:
            args["active"] = bool(active)
        return _model(V2UserList, await self._client.call("users.lookup", args))

    async def list_users_by_ids(self, user_ids, local=False, active=None):
        return await self._lookup("user_ids", user_ids, local, active)

    async def list_users_by_emails(self, emails, local=False, active=None):
        return await self._lookup("emails", emails, local, active)

    async def list_users_by_usernames(self, usernames, active=None):
        """local is always true for usernames (the BDK's rule, applied by the bridge)."""
        return await self._lookup("usernames", usernames, None, active)


__all__ = ["Message", "MessageCreationError", "MessageService", "StreamService",
           "UserService", "attachment_args"]
