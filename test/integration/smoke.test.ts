import t from 'tap';
import { startGateway, baseEnv } from '../support/gateway.js';
import { startRedis } from '../support/redis.js';
import { TestClient } from '../support/client.js';
import { token } from '../support/tokens.js';

t.test('a notification published to redis reaches its user', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.close());
  const gw = await startGateway(baseEnv({ HERALD_REDIS_URL: redis.url }));
  t.teardown(() => gw.stop());
  await gw.waitForLog((l) => l.msg === 'redis subscription active');
  const alice = await TestClient.connect(gw.ws, { headers: { authorization: `Bearer ${await token({ sub: 'alice' })}` } });
  t.teardown(() => alice.close());
  await redis.client().publish('notifications:user:alice', '{"title":"hi"}');
  const n = await alice.next('notification');
  t.same(n['data'], { title: 'hi' });
});
