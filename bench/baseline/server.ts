// The baseline: the least a uWS server can do to play Herald's part in the bench.
// No JWT (the user id comes from ?user=), no validation, no metrics, no dedup; the
// same frames and the same Redis bridge. Herald ÷ baseline = the cost of Herald's features.
import { Redis } from 'ioredis';
import { loadUws } from '../../dist/uws.js';

interface UserData {
  user: string;
}

const port = Number(process.env['PORT'] ?? '0');
const redisUrl = process.env['REDIS_URL'];
const prefix = 'notifications';
const uws = loadUws();
const app = uws.App();
let nextId = 0;

app.ws<UserData>('/ws', {
  compression: uws.DISABLED,
  maxPayloadLength: 16 * 1024,
  idleTimeout: 60,
  sendPingsAutomatically: true,
  maxBackpressure: 1024 * 1024,
  upgrade: (res, req, context) => {
    const user = req.getQuery('user') ?? '0';
    res.upgrade<UserData>(
      { user },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    const { user } = ws.getUserData();
    ws.subscribe(`user:${user}`);
    ws.subscribe('system');
    ws.send(
      JSON.stringify({
        type: 'connected',
        connectionId: String(nextId++),
        userId: user,
        topics: [`user:${user}`, 'system'],
        heartbeatMs: 30000,
        serverTime: Date.now(),
      }),
    );
  },
  message: (ws, message) => {
    // Answer pings so the harness can use the same client for both servers.
    const text = Buffer.from(message).toString();
    if (text.includes('"ping"')) ws.send(JSON.stringify({ type: 'pong', ts: Date.now() }));
  },
});

app.listen('127.0.0.1', port, (socket) => {
  if (socket === false) {
    console.error(`baseline: cannot listen on ${port}`);
    process.exit(1);
  }
  console.log(JSON.stringify({ msg: 'baseline listening', port: uws.us_socket_local_port(socket as never) }));
});

if (redisUrl !== undefined) {
  const sub = new Redis(redisUrl);
  sub.on('ready', () => {
    void sub.psubscribe(`${prefix}:*`).then(() => console.log(JSON.stringify({ msg: 'redis subscription active' })));
  });
  sub.on('pmessage', (_p: string, channel: string, message: string) => {
    const topic = channel.slice(prefix.length + 1);
    // As Herald does: a topic nobody here holds costs one native lookup, no frame.
    if (app.numSubscribers(topic) === 0) return;
    app.publish(topic, `{"type":"notification","topic":${JSON.stringify(topic)},"id":"${nextId++}","ts":${Date.now()},"data":${message}}`);
  });
}
process.on('SIGTERM', () => process.exit(0));
