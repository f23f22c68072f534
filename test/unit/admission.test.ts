// Admission control is pure (time is passed in), so every rule is a table row here;
// the integration file proves the gateway wires it to real upgrades.
import t from 'tap';
import { type AdmissionLimits, addressKey, clientAddress, createAdmission, type Refusal } from '../../dist/admission.js';

const NO_LIMITS: AdmissionLimits = { maxConnections: 0, maxConnectionsPerIp: 0, upgradeRatePerIp: 0 };

/** Admits `ips` in order at time `now`; each outcome is 'ok' or the refusal's reason. */
function run(limits: Partial<AdmissionLimits>, ips: string[], now = 0): string[] {
  const a = createAdmission({ ...NO_LIMITS, ...limits });
  return ips.map((ip) => a.admit(ip, now)?.reason ?? 'ok');
}

t.test('each cap admits up to its limit and refuses the next with its own reason', async (t) => {
  const rows: Array<[name: string, limits: Partial<AdmissionLimits>, ips: string[], want: string[]]> = [
    ['global cap 2', { maxConnections: 2 }, ['a', 'b', 'c', 'a'], ['ok', 'ok', 'too_many_connections', 'too_many_connections']],
    [
      'per-address cap 2',
      { maxConnectionsPerIp: 2 },
      ['a', 'a', 'a', 'b', 'b', 'b'],
      ['ok', 'ok', 'too_many_connections_from_address', 'ok', 'ok', 'too_many_connections_from_address'],
    ],
    [
      'global cap wins over per-address',
      { maxConnections: 1, maxConnectionsPerIp: 1 },
      ['a', 'a', 'b'],
      ['ok', 'too_many_connections', 'too_many_connections'],
    ],
    [
      'rate 3: a burst of 3 then refusal',
      { upgradeRatePerIp: 3 },
      ['a', 'a', 'a', 'a', 'b'],
      ['ok', 'ok', 'ok', 'upgrade_rate_exceeded', 'ok'],
    ],
    ['all limits 0 = unlimited', {}, Array.from({ length: 10_000 }, () => 'a'), Array.from({ length: 10_000 }, () => 'ok')],
  ];
  for (const [name, limits, ips, want] of rows) t.strictSame(run(limits, ips), want, name);
});

t.test('a refusal carries the HTTP status that goes with its reason', async (t) => {
  const rows: Array<[limits: Partial<AdmissionLimits>, want: Pick<Refusal, 'status' | 'reason'>]> = [
    [{ maxConnections: 1 }, { status: 503, reason: 'too_many_connections' }],
    [{ maxConnectionsPerIp: 1 }, { status: 429, reason: 'too_many_connections_from_address' }],
    [{ upgradeRatePerIp: 1 }, { status: 429, reason: 'upgrade_rate_exceeded' }],
  ];
  for (const [limits, want] of rows) {
    const a = createAdmission({ ...NO_LIMITS, ...limits });
    t.equal(a.admit('10.0.0.1', 0), undefined, `${want.reason}: the first is admitted`);
    t.match(a.admit('10.0.0.1', 0), want, `${want.reason}: the second is refused with ${want.status}`);
  }
});

t.test('the upgrade rate refills with time: a full second gives the whole burst back, half a second half of it', async (t) => {
  const a = createAdmission({ ...NO_LIMITS, upgradeRatePerIp: 4 });
  for (let i = 0; i < 4; i++) t.equal(a.admit('a', 1000), undefined, `burst ${i + 1} of 4`);
  t.equal(a.admit('a', 1000)?.reason, 'upgrade_rate_exceeded', 'the fifth at the same instant is refused');
  t.equal(a.admit('a', 1249)?.reason, 'upgrade_rate_exceeded', 'just under one token refilled after 249 ms');
  t.equal(a.admit('a', 1500), undefined, 'after 500 ms two tokens are back: one admitted');
  t.equal(a.admit('a', 1500), undefined, 'and a second');
  t.equal(a.admit('a', 1500)?.reason, 'upgrade_rate_exceeded', 'but not a third');
  const outcomes = [0, 1, 2, 3, 4].map(() => a.admit('a', 60_000)?.reason ?? 'ok');
  t.strictSame(outcomes, ['ok', 'ok', 'ok', 'ok', 'upgrade_rate_exceeded'], 'a long pause refills to the burst size, never beyond');
});

t.test('a refused upgrade holds no place and a rate refusal spends no token', async (t) => {
  const a = createAdmission({ ...NO_LIMITS, maxConnections: 1, maxConnectionsPerIp: 1, upgradeRatePerIp: 2 });
  t.equal(a.admit('a', 0), undefined);
  t.equal(a.admit('a', 0)?.reason, 'too_many_connections');
  a.release('a');
  t.equal(a.admit('a', 0), undefined, 'the second token was not spent by the refusal');
});

t.test('release frees a place for the same address and for the global count', async (t) => {
  const a = createAdmission({ ...NO_LIMITS, maxConnections: 2, maxConnectionsPerIp: 1 });
  t.equal(a.admit('a', 0), undefined);
  t.equal(a.admit('b', 0), undefined);
  t.equal(a.admit('c', 0)?.reason, 'too_many_connections');
  a.release('a');
  t.equal(a.admit('a', 0), undefined, 'the released address may connect again');
  t.equal(a.admit('c', 0)?.reason, 'too_many_connections', 'which took the global place it gave back');
  a.release('b');
  t.equal(a.admit('c', 0), undefined, 'and a new address takes the global place');
});

t.test('releasing an unknown address, or more often than admitted, changes nothing', async (t) => {
  const a = createAdmission({ ...NO_LIMITS, maxConnections: 1, maxConnectionsPerIp: 1 });
  a.release('never-seen');
  t.equal(a.addresses, 0, 'an unknown release creates no state');
  t.equal(a.admit('a', 0), undefined);
  a.release('a');
  a.release('a');
  a.release('a');
  t.equal(a.admit('a', 0), undefined, 'one admitted');
  t.equal(a.admit('b', 0)?.reason, 'too_many_connections', 'extra releases did not create spare places');
});

t.test('sweep forgets idle addresses but keeps those holding a connection or still refilling', async (t) => {
  const a = createAdmission({ ...NO_LIMITS, upgradeRatePerIp: 2 });
  t.equal(a.admit('idle', 0), undefined);
  a.release('idle');
  t.equal(a.admit('holding', 0), undefined);
  t.equal(a.addresses, 2);
  a.sweep(100);
  t.equal(a.addresses, 2, 'after 100 ms the idle address is still refilling its bucket, so it is kept');
  a.sweep(10_000);
  t.equal(a.addresses, 1, 'once its bucket is full the idle address is forgotten');
  a.release('holding');
  a.sweep(20_000);
  t.equal(a.addresses, 0, 'and so is the other once it holds nothing');
});

t.test('with no rate limit, sweep forgets an address as soon as it holds nothing', async (t) => {
  const a = createAdmission({ ...NO_LIMITS, maxConnectionsPerIp: 5 });
  for (const ip of ['a', 'b', 'c']) t.equal(a.admit(ip, 0), undefined);
  a.release('a');
  a.release('b');
  a.sweep(0);
  t.equal(a.addresses, 1, 'only the address that still holds a connection is kept');
});

t.test('a swept address starts again with a full burst', async (t) => {
  const a = createAdmission({ ...NO_LIMITS, upgradeRatePerIp: 1 });
  t.equal(a.admit('a', 0), undefined);
  a.release('a');
  t.equal(a.admit('a', 10)?.reason, 'upgrade_rate_exceeded');
  a.sweep(5000);
  t.equal(a.addresses, 0);
  t.equal(a.admit('a', 5000), undefined);
});

t.test('the client address is the socket address unless the proxy is trusted and names a valid first hop', async (t) => {
  const socket = '10.1.2.3';
  const long = '1'.repeat(46);
  const rows: Array<[name: string, xff: string, trust: boolean, want: string]> = [
    ['trust off ignores X-Forwarded-For', '203.0.113.7', false, socket],
    ['trust off ignores even a list', '203.0.113.7, 198.51.100.1', false, socket],
    ['trust on, no header: the socket address', '', true, socket],
    ['trust on takes the only hop', '203.0.113.7', true, '203.0.113.7'],
    ['trust on takes the first of several hops', '203.0.113.7, 198.51.100.1, 10.0.0.1', true, '203.0.113.7'],
    ['spaces around the first hop are trimmed', '   203.0.113.7  ,198.51.100.1', true, '203.0.113.7'],
    ['an IPv6 first hop is accepted', '2001:db8::1, 203.0.113.7', true, '2001:db8::1'],
    ['an IPv4-mapped IPv6 hop is accepted', '::ffff:203.0.113.7', true, '::ffff:203.0.113.7'],
    ['garbage falls back to the socket address', 'unknown', true, socket],
    ['a host name falls back', 'evil.example.com, 203.0.113.7', true, socket],
    ['script text falls back', '<script>alert(1)</script>', true, socket],
    ['an empty first hop falls back', ', 203.0.113.7', true, socket],
    ['a bracketed IPv6 with port falls back', '[2001:db8::1]:443', true, socket],
    ['a first hop over 45 characters falls back', long, true, socket],
    ['a single character falls back', '1', true, socket],
    ['a trailing newline is trimmed like a space', '203.0.113.7\n', true, '203.0.113.7'],
    ['a NUL inside the hop falls back', '203.0.\u0000113.7', true, socket],
    ['a Cyrillic lookalike falls back', '203.0.113.7\u0430', true, socket],
    ['colons and digits that are no address fall back', '1:2', true, socket],
    ['an IPv4 octet over 255 falls back', '203.0.113.256', true, socket],
    ['an IPv4 address with leading zeros falls back', '203.0.113.07', true, socket],
    ['an IPv6 address with too many groups falls back', '1:2:3:4:5:6:7:8:9', true, socket],
  ];
  for (const [name, xff, trust, want] of rows) t.equal(clientAddress(socket, xff, trust), want, name);
});

t.test('addressKey: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 cut to the prefix, anything else as is', async (t) => {
  const rows: Array<[name: string, address: string, bits: number, want: string]> = [
    ['IPv4', '203.0.113.7', 64, '203.0.113.7'],
    ['IPv4 loopback', '127.0.0.1', 64, '127.0.0.1'],
    ['an IPv6 address in its /64', '2001:db8:1:2:3:4:5:6', 64, '2001:db8:1:2:0:0:0:0/64'],
    ['another address of the same /64 gets the same key', '2001:db8:1:2:ffff:ffff:ffff:ffff', 64, '2001:db8:1:2:0:0:0:0/64'],
    ['the next /64 gets another', '2001:db8:1:3::1', 64, '2001:db8:1:3:0:0:0:0/64'],
    ['compressed form', '2001:db8::1', 64, '2001:db8:0:0:0:0:0:0/64'],
    ['upper case and leading zeros (uWS writes every digit)', '2001:0DB8:0001:0002:0000:0000:0000:0001', 64, '2001:db8:1:2:0:0:0:0/64'],
    ['a zone is dropped', 'fe80::1%eth0', 64, 'fe80:0:0:0:0:0:0:0/64'],
    ['/48', '2001:db8:1:2:3:4:5:6', 48, '2001:db8:1:0:0:0:0:0/48'],
    ['/56 cuts inside a group', '2001:db8:1:2ff:3:4:5:6', 56, '2001:db8:1:200:0:0:0:0/56'],
    ['/63 cuts the last bit of the fourth group', '2001:db8:1:3::1', 63, '2001:db8:1:2:0:0:0:0/63'],
    ['/65 keeps the first bit of the fifth group', '2001:db8:1:2:ffff::1', 65, '2001:db8:1:2:8000:0:0:0/65'],
    ['/128 keeps the whole address', '2001:db8::1', 128, '2001:db8:0:0:0:0:0:1/128'],
    ['/1', 'fd00::2', 1, '8000:0:0:0:0:0:0:0/1'],
    ['IPv6 loopback', '::1', 64, '0:0:0:0:0:0:0:0/64'],
    ['the unspecified address', '::', 64, '0:0:0:0:0:0:0:0/64'],
    // uWS reports an IPv4 client of a dual-stack (::) listener like this: it is that
    // IPv4 address, not a member of the /64 ::ffff:0:0/64 with every other IPv4 client.
    ['IPv4-mapped, as uWS writes it', '0000:0000:0000:0000:0000:ffff:7f00:0001', 64, '127.0.0.1'],
    ['IPv4-mapped, dotted tail', '::ffff:203.0.113.7', 64, '203.0.113.7'],
    ['IPv4-mapped, hex tail', '::ffff:cb00:7107', 128, '203.0.113.7'],
    ['an IPv4 tail that is not mapped stays IPv6', '64:ff9b::203.0.113.7', 96, '64:ff9b:0:0:0:0:0:0/96'],
    ['not an address: as is', 'unknown', 64, 'unknown'],
    ['empty: as is', '', 64, ''],
  ];
  for (const [name, address, bits, want] of rows) t.equal(addressKey(address, bits), want, name);
});

t.test('with /64 keys, addresses of one /64 share the per-address cap and rate, and another /64 does not', async (t) => {
  const a = createAdmission({ ...NO_LIMITS, maxConnectionsPerIp: 2, upgradeRatePerIp: 3 });
  const key = (ip: string): string => addressKey(ip, 64);
  t.equal(a.admit(key('2001:db8:1:2::1'), 0), undefined);
  t.equal(a.admit(key('2001:db8:1:2::2'), 0), undefined);
  t.equal(
    a.admit(key('2001:db8:1:2:abcd::3'), 0)?.reason,
    'too_many_connections_from_address',
    'a third address of the /64 is over the cap',
  );
  t.equal(a.admit(key('2001:db8:1:3::1'), 0), undefined, 'the next /64 is another client');
  a.release(key('2001:db8:1:2::1'));
  t.equal(a.admit(key('2001:db8:1:2::ffff'), 0), undefined, 'a place given back by one address serves another of the /64');
  t.equal(a.admit(key('2001:db8:1:2::1'), 0)?.reason, 'too_many_connections_from_address');
  a.release(key('2001:db8:1:2::2'));
  t.equal(a.admit(key('2001:db8:1:2::9'), 0)?.reason, 'upgrade_rate_exceeded', 'the /64 has spent its burst of 3');
});
