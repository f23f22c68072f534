// The retry advice the SDK takes from the code table (client/src/codes.ts), with
// hostile rows: codes and reasons that almost match, statuses from a proxy, names of
// Object.prototype.
import t from 'tap';
import { Refusal, Retry, refusalBody, retryAfterClose, retryAfterError, retryAfterRefusal, ServerClose } from '../../client/dist/codes.js';

t.test('after a close: the table says, and an unknown policy close is never retried', async (t) => {
  const rows: Array<[code: number, reason: string, want: Retry, name: string]> = [
    [1001, 'shutting_down', Retry.Backoff, 'shutdown: back off'],
    [1008, 'token_expired', Retry.FreshToken, 'expired token: a fresh one'],
    [1008, 'rate_limited', Retry.Backoff, 'rate limited: a wait fixes it, a new window'],
    [1009, 'message_too_big', Retry.Never, 'a frame too big would be sent again'],
    [1013, 'backpressure', Retry.Backoff, 'backpressure: after a pause'],
    [1008, 'TOKEN_EXPIRED', Retry.Never, 'reasons compare exactly: another policy close'],
    [1008, '', Retry.Never, 'a policy close without reason'],
    [1001, 'token_expired', Retry.Backoff, 'a known reason with another code is not that close'],
    [1006, '', Retry.Backoff, 'no close frame (network, idle timeout)'],
    [1000, '', Retry.Backoff, 'a normal close from the server'],
    [4100, 'pong_timeout', Retry.Backoff, "the client's own"],
    [1008, '__proto__', Retry.Never, 'a prototype name'],
  ];
  for (const [code, reason, want, name] of rows) t.equal(retryAfterClose(code, reason), want, name);
});

t.test('after a refused upgrade: a fresh token when the status may be a token problem, else back off, never give up', async (t) => {
  const rows: Array<[status: number | undefined, want: Retry, name: string]> = [
    [undefined, Retry.FreshToken, 'no status (a browser): maybe a 401'],
    [401, Retry.FreshToken, '401'],
    [503, Retry.Backoff, '503 (draining, full, keys unavailable)'],
    [429, Retry.Backoff, '429'],
    [403, Retry.Backoff, '403: all of Herald\'s say "no", but a proxy may have said it'],
    [404, Retry.Backoff, '404 (a proxy during a deploy)'],
    [502, Retry.Backoff, 'a status Herald never sends'],
    [0, Retry.Backoff, 'zero'],
    [Number.NaN, Retry.Backoff, 'NaN'],
  ];
  for (const [status, want, name] of rows) t.equal(retryAfterRefusal(status), want, name);
});

t.test('after an error frame: the table says; a code it does not know has no advice', async (t) => {
  const rows: Array<[code: string, want: Retry | undefined]> = [
    ['forbidden', Retry.Never],
    ['too_many_topics', Retry.Never],
    ['invalid_message', Retry.Never],
    ['unknown_type', Retry.Never],
    ['rate_limited', Retry.Backoff],
    ['unavailable', Retry.Backoff],
    ['auth_failed', Retry.FreshToken],
    ['Forbidden', undefined],
    ['', undefined],
    ['__proto__', undefined],
    ['constructor', undefined],
    ['timeout', undefined],
  ];
  for (const [code, want] of rows) t.equal(retryAfterError(code), want, JSON.stringify(code));
});

t.test('a refusal body: error, then reason when there is one, then the extras, in that order', async (t) => {
  t.equal(JSON.stringify(refusalBody(Refusal.NotFound)), '{"error":"not_found"}');
  t.equal(JSON.stringify(refusalBody(Refusal.Draining)), '{"error":"unavailable","reason":"draining"}');
  t.equal(
    JSON.stringify(refusalBody(Refusal.BodyTooLarge, { limit: 1048576 })),
    '{"error":"payload_too_large","reason":"body_too_large","limit":1048576}',
  );
  t.equal(
    JSON.stringify(refusalBody(Refusal.InvalidJson, { message: 'body is not valid JSON' })),
    '{"error":"bad_request","reason":"invalid_json","message":"body is not valid JSON"}',
  );
});

t.test('the SDK close codes it acts on are the gateway closes', async (t) => {
  const { Close } = await import('../../client/dist/protocol.js');
  t.equal(Close.GoingAway, ServerClose.ShuttingDown.code);
  t.equal(Close.PolicyViolation, ServerClose.TokenExpired.code);
  t.equal(Close.PolicyViolation, ServerClose.RateLimited.code);
});
