import t from 'tap';
import {
  channelToTopic,
  type Grants,
  initialTopics,
  isBaseTopic,
  isGranted,
  isTopic,
  isValidName,
  NO_GRANTS,
  parseGrants,
  topicToChannel,
} from '../../dist/topics.js';

t.test('isTopic accepts exactly 1-128 of [A-Za-z0-9:_.@-]', async (t) => {
  const rows: Array<[string, boolean, string]> = [
    ['user:42', true, 'user topic'],
    ['role:admin', true, 'role topic'],
    ['system', true, 'bare word'],
    ['org:rio:team_1.a@b-c', true, 'every allowed punctuation'],
    ['a', true, 'one character'],
    ['x'.repeat(128), true, '128 characters'],
    [':', true, 'a lone colon is in the grammar'],
    ['__proto__', true, 'prototype name is just a word'],
    ['', false, 'empty'],
    ['x'.repeat(129), false, '129 characters'],
    ['x'.repeat(100_000), false, 'huge'],
    [' user:42', false, 'leading space'],
    ['user:42 ', false, 'trailing space'],
    ['user:42\n', false, 'trailing newline'],
    ['user:\n42', false, 'embedded newline'],
    ['user 42', false, 'inner space'],
    ['user:4\u200b2', false, 'zero-width space'],
    ['us\u0435r:42', false, 'Cyrillic е look-alike'],
    ['user:４２', false, 'full-width digits'],
    ['user:*', false, 'glob star'],
    ['user:?', false, 'glob question mark'],
    ['user:[a]', false, 'glob class'],
    ['user/42', false, 'slash'],
    ['user:42\u0000', false, 'NUL'],
    ['é', false, 'accented letter'],
    ['🎉', false, 'emoji'],
  ];
  for (const [topic, want, name] of rows) t.equal(isTopic(topic), want, name);
});

t.test('isValidName (sub and roles) accepts 1-123 of [A-Za-z0-9_.@-]: no colon, no star', async (t) => {
  const rows: Array<[string, boolean, string]> = [
    ['alice', true, 'a word'],
    ['42', true, 'digits'],
    ['a_l.i@c-e', true, 'every allowed punctuation'],
    ['x'.repeat(123), true, '123 characters: user:<sub> is then 128'],
    ['x'.repeat(124), false, '124 characters'],
    ['', false, 'empty'],
    ['alice:billing', false, "a colon would make user:alice:billing someone else's user topic"],
    [':', false, 'a lone colon'],
    ['alice:', false, 'a trailing colon'],
    [':alice', false, 'a leading colon'],
    ['alice*', false, 'a star'],
    ['*', false, 'a lone star'],
    ['al ice', false, 'a space'],
    ['\u0430lice', false, 'a Cyrillic а'],
    ['alice\n', false, 'a trailing newline'],
    ['alice\u0000', false, 'a NUL'],
  ];
  for (const [name, want, why] of rows) t.equal(isValidName(name), want, why);
});

t.test(
  "with names free of colons, a user:<sub>:* grant covers no other user's user topic and a role:<r>:* grant no other role",
  async (t) => {
    const grants = parseGrants(['user:alice:*', 'role:ops:*']) as Grants;
    const names = ['alice', 'alice.billing', 'alice-x', 'ops', 'opsx', 'a', 'x'.repeat(123)];
    for (const n of names) {
      t.ok(isValidName(n), `${n.slice(0, 20)} is a valid name`);
      t.notOk(isGranted(grants, `user:${n}`), `user:${n} is not covered`);
      t.notOk(isGranted(grants, `role:${n}`), `role:${n} is not covered`);
    }
    t.notOk(isValidName('alice:billing'), 'the one name that would be covered is refused');
  },
);

t.test('channelToTopic strips exactly "<prefix>:" and validates the rest', async (t) => {
  const rows: Array<[prefix: string, channel: string, want: string | undefined, name: string]> = [
    ['notifications', 'notifications:user:42', 'user:42', 'user channel'],
    ['notifications', 'notifications:role:admin', 'role:admin', 'role channel'],
    ['notifications', 'notifications:system', 'system', 'system channel'],
    ['notifications', 'notifications:org:rio', 'org:rio', 'org channel'],
    ['notifications', 'notificationsX:user:1', undefined, 'prefix look-alike with an extra character'],
    ['notifications', 'notifications_user:1', undefined, 'underscore instead of colon'],
    ['notifications', 'notifications:', undefined, 'prefix and colon alone'],
    ['notifications', 'notifications', undefined, 'prefix alone'],
    ['notifications', '', undefined, 'empty channel'],
    ['notifications', 'notification:user:1', undefined, 'shorter look-alike prefix'],
    ['notifications', 'Notifications:user:1', undefined, 'case differs'],
    ['notifications', 'n\u043etifications:user:1', undefined, 'Cyrillic о in the prefix'],
    ['notifications', 'other:notifications:user:1', undefined, 'prefix not at the start'],
    ['notifications', 'notifications:notifications:user:1', 'notifications:user:1', 'prefix repeated: only the first is stripped'],
    ['notifications', 'notifications:user:1 ', undefined, 'trailing space in the topic'],
    ['notifications', 'notifications:user:*', undefined, 'glob in the topic'],
    ['notifications', `notifications:${'x'.repeat(128)}`, 'x'.repeat(128), 'topic of 128'],
    ['notifications', `notifications:${'x'.repeat(129)}`, undefined, 'topic of 129'],
    ['app:notify', 'app:notify:user:1', 'user:1', 'nested prefix'],
    ['app:notify', 'app:notifyX:user:1', undefined, 'nested prefix look-alike'],
    ['app:notify', 'app:user:1', undefined, 'only the first part of a nested prefix'],
    ['app', 'app:notify:user:1', 'notify:user:1', 'shorter prefix sees the longer one as topic'],
  ];
  for (const [prefix, channel, want, name] of rows) t.equal(channelToTopic(prefix, channel), want, name);
});

t.test('topicToChannel is the inverse of channelToTopic for valid topics', async (t) => {
  for (const topic of ['user:42', 'system', 'a', 'x'.repeat(128), 'notifications:user:1']) {
    const channel = topicToChannel('notifications', topic);
    t.equal(channel, `notifications:${topic}`);
    t.equal(channelToTopic('notifications', channel), topic, topic);
  }
});

function grants(claim: string[]): Grants {
  const g = parseGrants(claim);
  if (g === undefined) throw new Error(`grants ${JSON.stringify(claim)} did not parse`);
  return g;
}

t.test('parseGrants splits exact topics from prefix grants', async (t) => {
  const rows: Array<[claim: string[], exact: string[], prefixes: string[]]> = [
    [[], [], []],
    [['org:rio'], ['org:rio'], []],
    [['feed:*'], [], ['feed:']],
    [['*'], [], ['']],
    [['org:rio', 'feed:*', 'org:rio'], ['org:rio'], ['feed:']],
    [['__proto__', 'constructor'], ['__proto__', 'constructor'], []],
    [['feed*'], [], ['feed']],
    [[`${'x'.repeat(127)}*`], [], ['x'.repeat(127)]],
  ];
  for (const [claim, exact, prefixes] of rows) {
    const g = parseGrants(claim);
    t.ok(g !== undefined, `${JSON.stringify(claim)} parses`);
    if (g === undefined) continue;
    t.strictSame([...g.exact].sort(), [...exact].sort(), `${JSON.stringify(claim)} exact`);
    t.strictSame([...g.prefixes], prefixes, `${JSON.stringify(claim)} prefixes`);
  }
});

t.test('parseGrants refuses the whole claim when any entry is invalid', async (t) => {
  const rows: Array<[string[], string]> = [
    [[''], 'empty entry'],
    [['org:rio', ''], 'empty entry after a good one'],
    [['**'], 'double star'],
    [['feed:**'], 'prefix ending in two stars'],
    [['*feed'], 'leading star'],
    [['fe*ed'], 'inner star'],
    [['org rio'], 'space'],
    [[' org:rio'], 'leading space'],
    [['org:rio\n'], 'trailing newline'],
    [['\u043ergs:*'], 'Cyrillic о in a prefix'],
    [['x'.repeat(129)], 'exact entry of 129'],
    [[`${'x'.repeat(128)}*`], 'prefix of 128 before the star'],
    [['feed:?'], 'question mark'],
    [['user:%'], 'percent'],
  ];
  for (const [claim, name] of rows) t.equal(parseGrants(claim), undefined, name);
});

t.test('isGranted matches exact topics and prefix grants only', async (t) => {
  const g = grants(['org:rio', 'feed:*']);
  const rows: Array<[string, boolean, string]> = [
    ['org:rio', true, 'exact grant'],
    ['org:rio:team', false, 'exact grant is not a prefix'],
    ['org:ri', false, 'shorter than the exact grant'],
    ['ORG:RIO', false, 'case differs'],
    ['feed:a', true, 'under the prefix'],
    ['feed:a:b', true, 'deeper under the prefix'],
    ['feed:', true, 'the prefix itself with nothing after (callers validate topics first)'],
    ['feed', false, 'prefix without its colon'],
    ['feedback', false, 'look-alike that shares letters'],
    ['f\u0435ed:a', false, 'Cyrillic е look-alike'],
    ['user:alice', false, 'unrelated'],
    ['__proto__', false, 'prototype name'],
    ['constructor', false, 'prototype method name'],
    ['', false, 'empty'],
  ];
  for (const [topic, want, name] of rows) t.equal(isGranted(g, topic), want, name);
});

t.test('a lone * grants every topic', async (t) => {
  const g = grants(['*']);
  for (const topic of ['user:bob', 'system', 'x'.repeat(128), 'a']) t.ok(isGranted(g, topic), topic);
});

t.test('NO_GRANTS grants nothing and cannot be widened', async (t) => {
  for (const topic of ['user:bob', 'system', '', '__proto__']) t.notOk(isGranted(NO_GRANTS, topic), topic);
  t.ok(Object.isFrozen(NO_GRANTS));
  t.ok(Object.isFrozen(NO_GRANTS.prefixes));
  t.throws(() => (NO_GRANTS.prefixes as string[]).push(''), TypeError);
});

t.test('initialTopics gives the user topic, one topic per role and system, without duplicates', async (t) => {
  const rows: Array<[user: string, roles: string[], want: string[], name: string]> = [
    ['alice', [], ['user:alice', 'system'], 'no roles'],
    ['alice', ['admin'], ['user:alice', 'role:admin', 'system'], 'one role'],
    ['alice', ['admin', 'ops'], ['user:alice', 'role:admin', 'role:ops', 'system'], 'two roles in order'],
    ['alice', ['admin', 'admin', 'ops', 'admin'], ['user:alice', 'role:admin', 'role:ops', 'system'], 'duplicate roles'],
    ['alice', ['system'], ['user:alice', 'role:system', 'system'], 'a role named system stays a role topic'],
    ['__proto__', ['__proto__'], ['user:__proto__', 'role:__proto__', 'system'], 'prototype names'],
  ];
  for (const [user, roles, want, name] of rows) t.strictSame(initialTopics(user, roles), want, name);
});

t.test('isBaseTopic agrees with initialTopics, including on hostile near-misses', async (t) => {
  const identity = { userId: 'alice', roles: ['admin', 'ops'] };
  for (const topic of initialTopics(identity.userId, identity.roles)) t.ok(isBaseTopic(identity, topic), `${topic} is a base topic`);
  const rows = [
    'user:bob',
    'user:alice ',
    'user:',
    'role:',
    'role:adm',
    'role:admin:x',
    'system:x',
    'System',
    'roles:admin',
    'user:alice:x',
    '',
  ];
  for (const topic of rows) t.notOk(isBaseTopic(identity, topic), `${JSON.stringify(topic)} is not`);
  t.notOk(isBaseTopic({ userId: 'alice', roles: [] }, 'role:admin'), 'a role the identity lacks');
});
