// Every metric Herald exports, on this process's private registry: Herald's own and
// prom-client's process and Node.js metrics, all prefixed herald_. Under the supervisor
// /metrics answers for every worker at once (gateway.ts aggregates the workers'
// registries: Herald's own metrics summed, prom-client's each by its own rule).
// Label values come only from code tables and HTTP statuses Herald sets, never from
// user input. Every labelled series but herald_publish_requests_total's is created at 0,
// so dashboards see 0, not "no data".
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { AUTH_FAILURES, type AuthFailure } from './auth.js';
import { ErrorCode } from './protocol.js';

/** Why a connection closed, as a metric label. */
export const CLOSE_REASONS = [
  'normal',
  'going_away',
  'shutting_down',
  'binary_not_supported',
  'invalid_json',
  'rate_limited',
  'message_too_big',
  'token_expired',
  'token_revoked',
  'disconnected',
  'reconnect',
  'backpressure',
  'abnormal',
  'other',
] as const;
export type CloseLabel = (typeof CLOSE_REASONS)[number];

export const ADMISSION_REASONS = [
  'too_many_connections',
  'too_many_connections_from_address',
  'upgrade_rate_exceeded',
  'too_many_connections_for_user',
  'too_many_protocols',
  'uri_too_long',
  'connection_not_upgrade',
] as const;
export type AdmissionReason = (typeof ADMISSION_REASONS)[number];

/** malformed: a message on an internal channel that is not an announcement (someone else published there). */
export const DROP_REASONS = ['invalid_topic', 'too_large', 'duplicate', 'malformed'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export const HISTORY_WRITE_RESULTS = ['recorded', 'found', 'failed', 'dropped'] as const;
export type HistoryWriteResult = (typeof HISTORY_WRITE_RESULTS)[number];

/** Why a topic of a `resume` was not recovered: the epoch changed, the history was
 *  trimmed (by count or age), more was missed than may be replayed, the connection does
 *  not hold the topic, or history is off. */
const UNRECOVERED_REASONS = ['epoch_changed', 'trimmed', 'too_many', 'not_held', 'history_off'] as const;
export type UnrecoveredReason = (typeof UNRECOVERED_REASONS)[number];

/** How a `history` request ended: answered, or refused (not held nor granted, history
 *  off, over the replay budget) or failed (Redis). */
const HISTORY_REQUEST_RESULTS = ['served', 'forbidden', 'history_off', 'over_budget', 'failed'] as const;
export type HistoryRequestResult = (typeof HISTORY_REQUEST_RESULTS)[number];

/** The control API's actions (control.ts). */
export const CONTROL_ACTIONS = ['disconnect', 'unsubscribe', 'subscribe', 'revoke'] as const;
export type ControlAction = (typeof CONTROL_ACTIONS)[number];

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'herald_' });

  const connectionsOpen = new Gauge({ name: 'herald_connections', help: 'WebSocket connections open now', registers: [registry] });
  const connectionsOpened = new Counter({
    name: 'herald_connections_opened_total',
    help: 'WebSocket connections accepted',
    registers: [registry],
  });
  const connectionsClosed = new Counter({
    name: 'herald_connections_closed_total',
    help: 'WebSocket connections closed, by reason',
    labelNames: ['reason'],
    registers: [registry],
  });
  const messagesReceived = new Counter({
    name: 'herald_messages_received_total',
    help: 'Frames received from clients',
    registers: [registry],
  });
  const messagesSent = new Counter({
    name: 'herald_messages_sent_total',
    help: 'Frames handed to uWS for clients (a notification counts once per subscriber)',
    registers: [registry],
  });
  const redisMessages = new Counter({
    name: 'herald_redis_messages_total',
    help: 'Messages Redis sent this gateway, by source: topic (its interest subscriptions) or pattern (the recorder role)',
    labelNames: ['source'],
    registers: [registry],
  });
  for (const source of ['topic', 'pattern', 'control']) redisMessages.labels(source).inc(0);
  const redisSubscriptions = new Gauge({
    name: 'herald_redis_subscriptions',
    help: 'Redis channels this gateway is subscribed to: one per topic held here (kind topic), one per user with a connection here (kind control)',
    labelNames: ['kind'],
    registers: [registry],
  });
  const redisSubscriptionCommands = new Counter({
    name: 'herald_redis_subscription_commands_total',
    help: 'SUBSCRIBE and UNSUBSCRIBE commands sent (each for up to 1,000 channels), by command',
    labelNames: ['command'],
    registers: [registry],
  });
  for (const c of ['subscribe', 'unsubscribe']) redisSubscriptionCommands.labels(c).inc(0);
  const recorder = new Gauge({
    name: 'herald_recorder',
    help: '1 while this gateway holds a recorder slot (records plain PUBLISHes into history)',
    registers: [registry],
  });
  const announcementsReached = new Counter({
    name: 'herald_recorder_announcements_delivered_total',
    help: 'Gateway subscriptions redis-server reported reaching with the announcements of what this recorder recorded (the PUBLISH replies inside herald_record)',
    registers: [registry],
  });
  const recorderLeases = new Counter({
    name: 'herald_recorder_leases_total',
    help: 'Times this gateway took a recorder slot (at start, or over from a gateway that stopped renewing it)',
    registers: [registry],
  });
  const notificationsPublished = new Counter({
    name: 'herald_notifications_published_total',
    help: 'Notifications published to uWS topics (from Redis or POST /publish)',
    registers: [registry],
  });
  const notificationsUnrouted = new Counter({
    name: 'herald_notifications_unrouted_total',
    help: 'Notifications for topics with no subscriber on this gateway (skipped before any parsing)',
    registers: [registry],
  });
  const notificationsDropped = new Counter({
    name: 'herald_notifications_dropped_total',
    help: 'Notifications not published, by reason',
    labelNames: ['reason'],
    registers: [registry],
  });
  const deliveryLatency = new Histogram({
    name: 'herald_delivery_latency_seconds',
    help: "Time from a notification's receipt (Redis or /publish) to its hand-off to uWS",
    buckets: [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1],
    registers: [registry],
  });
  const errors = new Counter({
    name: 'herald_errors_total',
    help: 'Error frames sent to clients, by code',
    labelNames: ['code'],
    registers: [registry],
  });
  const rateLimited = new Counter({
    name: 'herald_rate_limited_total',
    help: 'Client frames refused with rate_limited: over the rate limit, too many waiting behind a request, or a resume over the replay budget',
    registers: [registry],
  });
  const authFailures = new Counter({
    name: 'herald_auth_failures_total',
    help: 'Upgrades refused, by reason',
    labelNames: ['reason'],
    registers: [registry],
  });
  const authDuration = new Histogram({
    name: 'herald_auth_duration_seconds',
    help: "Time to verify an upgrade's token",
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05, 0.25, 1],
    registers: [registry],
  });
  const reauths = new Counter({
    name: 'herald_reauth_total',
    help: 'auth frames (token renewal on an open connection), by result: ok, subject_mismatch or the refusal reason',
    labelNames: ['result'],
    registers: [registry],
  });
  for (const r of ['ok', 'subject_mismatch', ...AUTH_FAILURES]) reauths.labels(r).inc(0);
  const historyWrites = new Counter({
    name: 'herald_history_writes_total',
    help: 'Plain PUBLISHes this gateway handled as a recorder, by result: recorded (by this call), found (another recorder had), failed (a call failed; retried), dropped (over the waiting bound; lost)',
    labelNames: ['result'],
    registers: [registry],
  });
  for (const r of HISTORY_WRITE_RESULTS) historyWrites.labels(r).inc(0);
  const resumes = new Counter({
    name: 'herald_resumes_total',
    help: 'Topics clients asked to resume, by result: recovered, or unrecovered with its reason (epoch_changed, trimmed, too_many, not_held, history_off)',
    labelNames: ['result', 'reason'],
    registers: [registry],
  });
  resumes.inc({ result: 'recovered' }, 0);
  for (const reason of UNRECOVERED_REASONS) resumes.inc({ result: 'unrecovered', reason }, 0);
  const historyRequests = new Counter({
    name: 'herald_history_requests_total',
    help: 'history requests from clients, by result: served, forbidden, history_off, over_budget (replay budget), failed (Redis)',
    labelNames: ['result'],
    registers: [registry],
  });
  for (const r of HISTORY_REQUEST_RESULTS) historyRequests.labels(r).inc(0);
  const gapFills = new Counter({
    name: 'herald_gap_fills_total',
    help: 'Topics this gateway refilled from history after its Redis subscription came back, by result',
    labelNames: ['result'],
    registers: [registry],
  });
  for (const r of ['filled', 'unrecoverable']) gapFills.labels(r).inc(0);
  const replayedNotifications = new Counter({
    name: 'herald_replayed_notifications_total',
    help: 'Notifications sent again from history (client resumes, history replies and gap fills)',
    registers: [registry],
  });
  const admissionRefused = new Counter({
    name: 'herald_admission_refused_total',
    help: 'Upgrades refused by admission control or request limits, by reason',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const r of ADMISSION_REASONS) admissionRefused.labels(r).inc(0);
  const originRejected = new Counter({
    name: 'herald_origin_rejected_total',
    help: 'Upgrades refused with 403 because HERALD_ALLOWED_ORIGINS does not list their Origin',
    registers: [registry],
  });
  const publishRequests = new Counter({
    name: 'herald_publish_requests_total',
    help: 'POST /publish requests, by HTTP status',
    labelNames: ['status'],
    registers: [registry],
  });
  const clientEvents = new Counter({
    name: 'herald_client_events_total',
    help: 'ack and mark_read events from clients (one per notification id), by type and outcome',
    labelNames: ['type', 'outcome'],
    registers: [registry],
  });
  const redisReconnects = new Counter({
    name: 'herald_redis_reconnects_total',
    help: 'Times the Redis subscriber connection was lost and a reconnect began',
    registers: [registry],
  });
  // Only frames written to one socket: uWS reports no count for the notifications
  // app.publish skips for a socket over the limit (this build has no `dropped` handler),
  // so those show as herald_backpressure_closes_total and herald_backpressured_connections.
  const directFramesDropped = new Counter({
    name: 'herald_direct_frames_dropped_total',
    help: 'Frames sent to one socket (connected, replies, errors, resume replays) that uWS dropped because the socket already held HERALD_MAX_BACKPRESSURE_BYTES unsent (notifications app.publish skips are not counted)',
    registers: [registry],
  });
  const backpressureCloses = new Counter({
    name: 'herald_backpressure_closes_total',
    help: 'Connections closed (1013) because they held HERALD_MAX_BACKPRESSURE_BYTES unsent (checked once a second)',
    registers: [registry],
  });
  const backpressured = new Gauge({
    name: 'herald_backpressured_connections',
    help: 'Connections holding HERALD_MAX_BACKPRESSURE_BYTES unsent at the last check, missing notifications (only with HERALD_CLOSE_ON_BACKPRESSURE=false)',
    registers: [registry],
  });
  // Each process reports 1; summed across workers under the supervisor, it counts them.
  const workers = new Gauge({
    name: 'herald_workers',
    help: 'Gateway processes answering (1 per process; summed across workers)',
    registers: [registry],
  });
  workers.set(1);
  const topics = new Gauge({ name: 'herald_topics', help: 'Topics with at least one subscriber on this process', registers: [registry] });
  const redisUp = new Gauge({
    name: 'herald_redis_up',
    help: '1 while every topic held here is subscribed in Redis and the command connection is ready (always 0 in embedded mode)',
    registers: [registry],
  });

  const controlRequests = new Counter({
    name: 'herald_control_requests_total',
    help: 'Control API requests answered by this gateway, by action and HTTP status',
    labelNames: ['action', 'status'],
    registers: [registry],
  });
  const controlApplied = new Counter({
    name: 'herald_control_applied_total',
    help: 'Connections on this gateway a control action acted on (closed, subscribed, unsubscribed), by action',
    labelNames: ['action'],
    registers: [registry],
  });
  for (const a of CONTROL_ACTIONS) controlApplied.labels(a).inc(0);
  const presenceRequests = new Counter({
    name: 'herald_presence_requests_total',
    help: 'GET /presence requests answered by this gateway, by HTTP status',
    labelNames: ['status'],
    registers: [registry],
  });
  const presenceFlushes = new Counter({
    name: 'herald_presence_flushes_total',
    help: 'Presence batches written to Redis (counts, heartbeat, connection events), by result',
    labelNames: ['result'],
    registers: [registry],
  });
  for (const r of ['ok', 'failed']) presenceFlushes.labels(r).inc(0);
  const presenceWrites = new Counter({
    name: 'herald_presence_writes_total',
    help: 'Presence entries (a user or topic count of this gateway) written to Redis',
    registers: [registry],
  });
  const presenceGateways = new Gauge({
    name: 'herald_presence_gateways',
    help: 'Live gateways in the presence heartbeat set at the last flush',
    // Every worker sees the same set: under the supervisor the host reports it once.
    aggregator: 'max',
    registers: [registry],
  });
  const presenceReaped = new Counter({
    name: 'herald_presence_reaped_total',
    help: 'Dead gateways whose presence entries this gateway removed',
    registers: [registry],
  });
  const userConnections = new Gauge({
    name: 'herald_users',
    help: 'Users with at least one connection (open or being opened) on this process',
    registers: [registry],
  });
  const admissionChecks = new Counter({
    name: 'herald_admission_checks_total',
    help: 'Per-user admission checks (revocation and HERALD_MAX_CONNECTIONS_PER_USER) after the token, by where they were decided: redis, or local (embedded mode, or Redis unreachable)',
    labelNames: ['where'],
    registers: [registry],
  });
  for (const w of ['redis', 'local']) admissionChecks.labels(w).inc(0);
  const connectionEvents = new Counter({
    name: 'herald_connection_events_total',
    help: 'connected/disconnected entries for the events stream, by outcome (written, or dropped while Redis was unreachable and more than 100,000 waited)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  for (const o of ['written', 'dropped']) connectionEvents.labels(o).inc(0);

  // Zero-initialise every labelled child so dashboards see 0, not "no data".
  for (const r of CLOSE_REASONS) connectionsClosed.labels(r).inc(0);
  for (const r of DROP_REASONS) notificationsDropped.labels(r).inc(0);
  for (const r of AUTH_FAILURES) authFailures.labels(r).inc(0);
  for (const c of Object.values(ErrorCode)) errors.labels(c).inc(0);
  for (const t of ['ack', 'mark_read']) for (const o of ['recorded', 'failed', 'discarded']) clientEvents.labels(t, o).inc(0);

  return {
    registry,
    connectionsOpen,
    connectionsOpened,
    connectionClosed: (reason: CloseLabel) => connectionsClosed.labels(reason).inc(),
    messagesReceived,
    messagesSent,
    redisMessages: (source: 'topic' | 'pattern' | 'control') => redisMessages.labels(source).inc(),
    redisSubscriptions: (kind: 'topic' | 'control', n: number) => redisSubscriptions.labels(kind).set(n),
    redisSubscriptionCommand: (command: 'subscribe' | 'unsubscribe') => redisSubscriptionCommands.labels(command).inc(),
    recorder,
    recorderLeases,
    announcementsReached,
    notificationsPublished,
    notificationsUnrouted,
    notificationDropped: (reason: DropReason) => notificationsDropped.labels(reason).inc(),
    deliveryLatency,
    error: (code: ErrorCode) => errors.labels(code).inc(),
    rateLimited,
    authFailure: (reason: AuthFailure) => authFailures.labels(reason).inc(),
    authDuration,
    historyWrites: (result: HistoryWriteResult, n: number) => historyWrites.labels(result).inc(n),
    /** A resumed topic: recovered (no reason), or not and why. */
    resume: (why?: UnrecoveredReason) => resumes.inc(why === undefined ? { result: 'recovered' } : { result: 'unrecovered', reason: why }),
    historyRequest: (result: HistoryRequestResult) => historyRequests.labels(result).inc(),
    gapFill: (result: 'filled' | 'unrecoverable') => gapFills.labels(result).inc(),
    replayedNotifications,
    reauth: (result: AuthFailure | 'ok' | 'subject_mismatch') => reauths.labels(result).inc(),
    originRejected,
    admissionRefused: (reason: AdmissionReason) => admissionRefused.labels(reason).inc(),
    publishRequest: (status: number) => publishRequests.labels(String(status)).inc(),
    /** `n` ids of one frame (the list form carries up to MAX_ACK_IDS). */
    clientEvent: (type: 'ack' | 'mark_read', outcome: 'recorded' | 'failed' | 'discarded', n = 1) =>
      clientEvents.labels(type, outcome).inc(n),
    controlRequest: (action: ControlAction | 'presence', status: number) =>
      action === 'presence' ? presenceRequests.labels(String(status)).inc() : controlRequests.labels(action, String(status)).inc(),
    controlApplied: (action: ControlAction, n = 1) => controlApplied.labels(action).inc(n),
    presenceFlush: (ok: boolean) => presenceFlushes.labels(ok ? 'ok' : 'failed').inc(),
    presenceWrites,
    presenceGateways,
    presenceReaped,
    userConnections,
    admissionCheck: (where: 'redis' | 'local', n = 1) => admissionChecks.labels(where).inc(n),
    connectionEvent: (outcome: 'written' | 'dropped', n = 1) => connectionEvents.labels(outcome).inc(n),
    redisUp,
    redisReconnects,
    directFramesDropped,
    backpressureCloses,
    backpressured,
    topics,
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
