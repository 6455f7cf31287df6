'use strict';
// events: the 17 event types as data (topic, payload key, the Java BDK's
// callback name, the C name), the BDK's default filter and the lookups the
// dispatcher needs. Counterpart of the type table in consumers/dfc_event.c.

// [topic, payload key, Java BDK callback, C callback]
const TYPES = [
  ['MESSAGESENT', 'messageSent', 'onMessageSent', 'on_message_sent'],
  ['SHAREDPOST', 'sharedPost', 'onSharedPost', 'on_shared_post'],
  ['INSTANTMESSAGECREATED', 'instantMessageCreated', 'onInstantMessageCreated', 'on_instant_message_created'],
  ['ROOMCREATED', 'roomCreated', 'onRoomCreated', 'on_room_created'],
  ['ROOMUPDATED', 'roomUpdated', 'onRoomUpdated', 'on_room_updated'],
  ['ROOMDEACTIVATED', 'roomDeactivated', 'onRoomDeactivated', 'on_room_deactivated'],
  ['ROOMREACTIVATED', 'roomReactivated', 'onRoomReactivated', 'on_room_reactivated'],
  ['USERREQUESTEDTOJOINROOM', 'userRequestedToJoinRoom', 'onUserRequestedToJoinRoom', 'on_user_requested_to_join_room'],
  ['USERJOINEDROOM', 'userJoinedRoom', 'onUserJoinedRoom', 'on_user_joined_room'],
  ['USERLEFTROOM', 'userLeftRoom', 'onUserLeftRoom', 'on_user_left_room'],
  ['ROOMMEMBERPROMOTEDTOOWNER', 'roomMemberPromotedToOwner', 'onRoomMemberPromotedToOwner', 'on_room_member_promoted_to_owner'],
  ['ROOMMEMBERDEMOTEDFROMOWNER', 'roomMemberDemotedFromOwner', 'onRoomMemberDemotedFromOwner', 'on_room_member_demoted_from_owner'],
  ['CONNECTIONREQUESTED', 'connectionRequested', 'onConnectionRequested', 'on_connection_requested'],
  ['CONNECTIONACCEPTED', 'connectionAccepted', 'onConnectionAccepted', 'on_connection_accepted'],
  ['MESSAGESUPPRESSED', 'messageSuppressed', 'onMessageSuppressed', 'on_message_suppressed'],
  ['SYMPHONYELEMENTSACTION', 'symphonyElementsAction', 'onSymphonyElementsAction', 'on_symphony_elements_action'],
  ['GENERICSYSTEMEVENT', 'genericSystemEvent', 'onGenericSystemEvent', 'on_generic_system_event'],
];
const UNKNOWN_CALLBACK = 'onUnknownEvent';
const UNKNOWN_C = 'on_unknown';

const BY_TOPIC = new Map(TYPES.map(([topic, key, cb, c]) => [topic, { topic, key, cb, c }]));
const C_NAME = new Map(TYPES.map(([, , cb, c]) => [cb, c]));
C_NAME.set(UNKNOWN_CALLBACK, UNKNOWN_C);

function kindOf(topic) {
  return BY_TOPIC.get(topic) || null;
}

function isMap(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

const EMPTY = Object.freeze({});

/** event.initiator, or an empty object when absent or not a map. */
function initiatorOf(event) {
  const i = event.initiator;
  return isMap(i) ? i : EMPTY;
}

/** The payload a typed callback gets: event.payload.<key>, or {} when absent. */
function payloadOf(event, kind) {
  const p = event.payload;
  const v = isMap(p) ? p[kind.key] : undefined;
  return isMap(v) ? v : EMPTY;
}

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** A userId as BigInt when it is an int64, else null. */
function userIdOf(initiator) {
  const u = initiator && initiator.user;
  if (!isMap(u)) return null;
  const id = u.userId;
  if (typeof id === 'bigint') return id >= I64_MIN && id <= I64_MAX ? id : null;
  if (typeof id === 'number' && Number.isInteger(id)) return BigInt(id);
  return null;
}

/**
 * The BDK rule (RealTimeEventListener.isAcceptingEvent): accept when
 * event.initiator.user.userId is present and differs from the bot's id.
 */
function defaultIsAccepting(event, botInfo) {
  const id = userIdOf(initiatorOf(event));
  return id !== null && id !== BigInt(botInfo.id);
}

module.exports = { TYPES, BY_TOPIC, C_NAME, UNKNOWN_CALLBACK, UNKNOWN_C, kindOf, initiatorOf, payloadOf, userIdOf, defaultIsAccepting, isMap };
