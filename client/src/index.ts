// @herald/client: a dependency-free client for the Herald notification gateway, for
// browsers and Node (Node 22+ has a global WebSocket; on Node 20 pass `ws`). This is
// the public API: what an app uses. The modules behind it (acks, backoff, dedup, requests,
// resume, the frame decoder) are internals, imported by path only by this repository's
// tests and benchmarks.

export type {
  AuthResult,
  ConnectionState,
  HeraldClientOptions,
  HeraldEvents,
  HistoryOptions,
  HistoryPage,
  Quality,
  QualityLevel,
  Recovery,
  ServerDisconnect,
  ServerTopic,
  StateChange,
  SubscriptionError,
  TokenSource,
  WebSocketConstructor,
  WebSocketLike,
} from './client.js';
export { HeraldClient, jwtExpiry } from './client.js';
export type { ErrorCode, ErrorFrameCode, HttpRefusal, ServerCloseCode } from './codes.js';
export { ErrorFrame, Refusal, Retry, retryAfterClose, retryAfterError, retryAfterRefusal, ServerClose } from './codes.js';
export type { Listener } from './emitter.js';
export { compareOffsets, isNotificationId, isOffset, isTopic, parseOffset } from './grammar.js';
export type { LocalStoragePositions, PositionStore, StorageLike, TopicPosition } from './positions.js';
export { LOCAL_STORAGE_WRITE_DELAY_MS, localStoragePositions, memoryPositions } from './positions.js';
export type { Notification, ResumedTopics, ServerErrorCode, Session, StoredNotification } from './protocol.js';
export { Close, MAX_ACK_IDS, MAX_HISTORY_LIMIT } from './protocol.js';
export type { ClientErrorCode, Clock, HeraldErrorCode } from './requests.js';
export { HeraldError } from './requests.js';
export type { SubscriptionEvents, SubscriptionState, TopicRecovery } from './subscription.js';
export { Subscription } from './subscription.js';
