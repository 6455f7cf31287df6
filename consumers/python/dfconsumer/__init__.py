"""dfconsumer: the Python consumer of dfbridge (Symphony datafeed over ZeroMQ), with
the Python BDK's DatafeedLoop / RealTimeEventListener API and libdfconsumer's
delivery guarantees (replay, gap fill, checkpoint, dedupe, ordering, groups, HA), and
the BDK's Message/Stream/User services over dfbridge's command channel."""

from .commands import (BadRequest, Busy, ClientClosed, CommandClient, CommandError,
                       CommandTimeout, NotAllowed, Rejected, Unavailable, UnknownOutcome)
from .listener import RealTimeEventListener, current_envelope, event_listener_context
from .loop import STATS_FIELDS, DatafeedLoop
from .metrics import METRICS, prometheus_text, serve_metrics
from .models import (EVENT_TYPES, MessageSuppressionResponse, Stream, SuccessResponse,
                     UserV2, V2StreamAttributes, V2UserList, V4Event, V4Initiator, V4Message,
                     V4MessageSent, V4Payload, V4Stream, V4User)
from .services import (Message, MessageCreationError, MessageService, StreamService,
                       UserService)
from .partition import fnv1a64, partition, partition_key
from .wire import GSEQ_AHEAD, SEQ_MAX, Envelope

__version__ = "0.1.0"

__all__ = [
    "DatafeedLoop", "RealTimeEventListener", "event_listener_context", "current_envelope",
    "STATS_FIELDS", "EVENT_TYPES", "V4Event", "V4Initiator", "V4User", "V4Stream", "V4Message",
    "V4MessageSent", "V4Payload", "UserV2", "Envelope", "fnv1a64", "partition", "partition_key",
    "SEQ_MAX", "GSEQ_AHEAD", "METRICS", "prometheus_text", "serve_metrics",
    "CommandClient", "CommandError", "BadRequest", "NotAllowed", "Rejected", "Unavailable",
    "UnknownOutcome", "Busy", "CommandTimeout", "ClientClosed", "Message",
    "MessageCreationError", "MessageService", "StreamService", "UserService", "Stream",
    "V2StreamAttributes", "V2UserList", "MessageSuppressionResponse", "SuccessResponse",
]
