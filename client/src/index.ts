// @herald/client: a dependency-free client for the Herald notification gateway, for
// browsers and Node (Node 22+ has a global WebSocket; on Node 20 pass `ws`).

export type { Backoff, BackoffOptions } from './backoff.js';
export { backoffCap, createBackoff } from './backoff.js';
export type {
  AuthResult,
  ConnectionState,
  HeraldClientOptions,
  HeraldEvents,
  Quality,
  QualityLevel,
  Recovery,
  StateChange,
  TokenSource,
  WebSocketConstructor,
  WebSocketLike,
} from './client.js';
export { HeraldClient, jwtExpiry } from './client.js';
export type { DedupWindow } from './dedup.js';
export { createDedupWindow } from './dedup.js';
export type { Listener } from './emitter.js';
export { Emitter } from './emitter.js';
export { compareOffsets, parseOffset } from './grammar.js';
export type { ClientFrame, Notification, RequestId, ResumedTopics, ServerErrorCode, ServerFrame, Session } from './protocol.js';
export { BEARER_PREFIX, Close, decodeServerFrame, isOffset, isTopic, SUBPROTOCOL } from './protocol.js';
export type {
  ClientErrorCode,
  Clock,
  HeraldErrorCode,
  HeraldErrorOptions,
  Reply,
  RequestFrame,
  RequestOptions,
  Requests,
  RequestsOptions,
} from './requests.js';
export { createRequests, HeraldError, systemClock } from './requests.js';
export type { PlanTimes, ResumeFrame, ResumePlan, ResumePoint, TopicPosition } from './resume.js';
export {
  MAX_RESUME_TOPICS,
  RESUME_MARGIN_MS,
  RESUME_OFFSET_MAX_AGE_MS,
  ResumeState,
  resumeFrames,
} from './resume.js';
