// The SDK's position stores (client/src/positions.ts): the memory default, the
// localStorage one (against a stand-in Storage: delayed, merged writes; garbage and
// throwing storage), and the guard the client reads any store through.
import t from 'tap';
import {
  asPosition,
  LOCAL_STORAGE_WRITE_DELAY_MS,
  localStoragePositions,
  memoryPositions,
  type PositionStore,
  readPosition,
  type StorageLike,
} from '../../client/dist/positions.js';

class FakeStorage implements StorageLike {
  readonly items = new Map<string, string>();
  writes = 0;
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.writes++;
    this.items.set(key, value);
  }
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('asPosition takes only {offset, epoch} with a valid offset and a short non-empty epoch', async (t) => {
  const rows: Array<[unknown, boolean]> = [
    [{ offset: '1-0', epoch: 'e' }, true],
    [{ offset: '1795450000000-12', epoch: '18a2f3c4b5d6e7', extra: 1 }, true],
    [null, false],
    [undefined, false],
    ['1-0', false],
    [42, false],
    [[], false],
    [{ offset: '1-0' }, false],
    [{ offset: '1-0', epoch: '' }, false],
    [{ offset: '1-0', epoch: 'e'.repeat(65) }, false],
    [{ offset: '1-0', epoch: 7 }, false],
    [{ offset: 10, epoch: 'e' }, false],
    [{ offset: '1.5-0', epoch: 'e' }, false],
    [{ offset: '-1-0', epoch: 'e' }, false],
    [{ offset: '1-0 ', epoch: 'e' }, false],
    [{ offset: '1234567890123456-0', epoch: 'e' }, false],
    [Object.create({ offset: '1-0', epoch: 'e' }), true], // inherited fields read like own ones: harmless
  ];
  for (const [v, ok] of rows) t.equal(asPosition(v) !== undefined, ok, JSON.stringify(v) ?? String(v));
  t.same(asPosition({ offset: '1-0', epoch: 'e', extra: 1 }), { offset: '1-0', epoch: 'e' }, 'only the two fields are kept');
});

t.test('readPosition survives a hostile store: throwing get, garbage, a promise', async (t) => {
  const hostile: PositionStore = {
    get(topic) {
      if (topic === 'org:throw') throw new Error('boom');
      if (topic === 'org:promise') return Promise.resolve({ offset: '1-0', epoch: 'e' }) as never;
      if (topic === 'org:garbage') return 'garbage' as never;
      return { offset: '5-1', epoch: 'e' };
    },
    set() {
      throw new Error('read-only');
    },
  };
  t.equal(readPosition(hostile, 'org:throw'), undefined);
  t.equal(readPosition(hostile, 'org:promise'), undefined, 'an async get is not a position (the interface is synchronous)');
  t.equal(readPosition(hostile, 'org:garbage'), undefined);
  t.same(readPosition(hostile, 'org:ok'), { offset: '5-1', epoch: 'e' });
});

t.test('memoryPositions keeps copies, lists them, and keeps topics that are Object.prototype names apart', async (t) => {
  const m = memoryPositions();
  const p = { offset: '1-0', epoch: 'e' };
  m.set('__proto__', p);
  m.set('constructor', { offset: '2-0', epoch: 'e' });
  p.offset = '9-9';
  t.same(m.get('__proto__'), { offset: '1-0', epoch: 'e' }, 'a copy: the caller mutating its object changes nothing');
  t.equal(m.get('toString'), undefined);
  t.same(
    [...(m.entries?.() ?? [])].map(([k]) => k),
    ['__proto__', 'constructor'],
  );
});

t.test('localStoragePositions reads the item once, delays writes, and writes a burst once', async (t) => {
  const storage = new FakeStorage();
  storage.items.set(
    'herald.positions',
    JSON.stringify({ 'org:a': { offset: '10-0', epoch: 'e' }, 'org:junk': 'x', 'org:bad': { offset: 'x', epoch: 'e' } }),
  );
  const s = localStoragePositions(undefined, storage);
  t.same(s.get('org:a'), { offset: '10-0', epoch: 'e' });
  t.equal(s.get('org:junk'), undefined, 'garbage entries are skipped, the rest kept');
  for (let i = 0; i < 300; i++) s.set('org:b', { offset: `20-${i}`, epoch: 'e' });
  t.equal(storage.writes, 0, 'not at once');
  await wait(LOCAL_STORAGE_WRITE_DELAY_MS + 30);
  t.equal(storage.writes, 1, 'a burst is one write');
  t.same(JSON.parse(storage.getItem('herald.positions') ?? ''), {
    'org:a': { offset: '10-0', epoch: 'e' },
    'org:b': { offset: '20-299', epoch: 'e' },
  });
  const again = localStoragePositions('herald.positions', storage);
  t.same(again.get('org:b'), { offset: '20-299', epoch: 'e' }, 'a reload reads what was written');
});

t.test('two tabs on one item: a write merges, keeping the further position per topic', async (t) => {
  const storage = new FakeStorage();
  const tab1 = localStoragePositions('k', storage);
  const tab2 = localStoragePositions('k', storage);
  tab1.set('org:a', { offset: '100-0', epoch: 'e' });
  tab1.set('org:b', { offset: '5-0', epoch: 'e' });
  tab1.flush();
  tab2.set('org:a', { offset: '99-0', epoch: 'e' }); // behind tab1
  tab2.set('org:c', { offset: '7-0', epoch: 'e' });
  tab2.flush();
  t.same(JSON.parse(storage.getItem('k') ?? ''), {
    'org:a': { offset: '100-0', epoch: 'e' },
    'org:b': { offset: '5-0', epoch: 'e' },
    'org:c': { offset: '7-0', epoch: 'e' },
  });
});

t.test('storage that is missing, unreadable, full or holding garbage degrades to memory', async (t) => {
  const throwing: StorageLike = {
    getItem() {
      throw new Error('SecurityError');
    },
    setItem() {
      throw new Error('QuotaExceededError');
    },
  };
  for (const [name, storage] of [
    ['throwing', throwing],
    ['missing', undefined],
  ] as const) {
    const s = localStoragePositions('k', storage);
    s.set('org:a', { offset: '1-0', epoch: 'e' });
    t.doesNotThrow(() => s.flush(), name);
    t.same(s.get('org:a'), { offset: '1-0', epoch: 'e' }, `${name}: kept in memory`);
  }
  for (const item of ['not json', '[1,2]', 'null', '"str"', '{"__proto__":{"offset":"1-0","epoch":"e"}}']) {
    const storage = new FakeStorage();
    storage.items.set('k', item);
    const s = localStoragePositions('k', storage);
    t.equal(s.get('org:a'), undefined, item);
    s.set('org:a', { offset: '2-0', epoch: 'e' });
    s.flush();
    t.same(JSON.parse(storage.getItem('k') ?? '')['org:a'], { offset: '2-0', epoch: 'e' }, `${item}: overwritten cleanly`);
  }
});
